"""The unnormalized density models family of harness."""
