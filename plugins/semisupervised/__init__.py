"""The semi-supervised learning with out-of-domain unlabeled data family of harness."""
