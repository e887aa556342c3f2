"""The adversarial robustness family of harness."""
