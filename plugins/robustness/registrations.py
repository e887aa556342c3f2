"""What the adversarial robustness family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 29)."""
