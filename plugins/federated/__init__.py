"""The federated learning family of harness."""
