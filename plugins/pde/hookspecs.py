"""The component kinds of the physics-informed PDE solving family, declared through
``register_kinds`` as a third-party family would (being built: issue 29)."""
