"""The mutual-information estimation family of harness."""
