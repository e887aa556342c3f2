"""Built-in plugins of harness, installed as ``harness_plugins``."""
