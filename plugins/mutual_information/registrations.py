"""What the mutual-information estimation family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 27)."""
