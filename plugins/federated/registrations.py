"""What the federated learning family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 28)."""
