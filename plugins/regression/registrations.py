"""What the regression and learning from aggregate responses family registers: tasks, datasets,
metrics and its kinds' components (being built: issue 27)."""
