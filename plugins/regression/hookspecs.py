"""The component kinds of the regression and learning from aggregate responses family, declared
through ``register_kinds`` as a third-party family would (being built: issue 27)."""
