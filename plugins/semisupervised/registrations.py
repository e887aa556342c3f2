"""What the semi-supervised learning with out-of-domain unlabeled data family registers: tasks,
datasets, metrics and its kinds' components (being built: issue 26)."""
