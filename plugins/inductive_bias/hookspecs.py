"""The component kinds of the inductive-bias measurement family, declared through
``register_kinds`` as a third-party family would (being built: issue 27)."""
