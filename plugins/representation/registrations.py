"""What the contrastive pre-training family registers: tasks, datasets, metrics and
its kinds' components (being built: issue 26)."""
