"""The classification family: task, trainer, models, losses, optimizers and schemes, metrics."""
