"""What the unnormalized density models family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 27)."""
