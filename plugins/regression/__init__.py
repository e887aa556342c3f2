"""The regression and learning from aggregate responses family of harness."""
