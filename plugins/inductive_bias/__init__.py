"""The inductive-bias measurement family of harness."""
