"""What the physics-informed PDE solving family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 29)."""
