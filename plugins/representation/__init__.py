"""The contrastive pre-training family of harness."""
