"""What the inductive-bias measurement family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 27)."""
