"""The physics-informed PDE solving family of harness."""
