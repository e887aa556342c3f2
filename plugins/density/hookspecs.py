"""The component kinds of the unnormalized density models family, declared through
``register_kinds`` as a third-party family would (being built: issue 27)."""
