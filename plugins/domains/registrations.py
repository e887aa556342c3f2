"""What the domain generalization family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 26)."""
