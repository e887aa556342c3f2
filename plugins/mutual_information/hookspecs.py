"""The component kinds of the mutual-information estimation family, declared through
``register_kinds`` as a third-party family would (being built: issue 27)."""
