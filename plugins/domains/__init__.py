"""The domain generalization family of harness."""
