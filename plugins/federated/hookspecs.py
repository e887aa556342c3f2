"""The component kinds of the federated learning family, declared through
``register_kinds`` as a third-party family would (being built: issue 28)."""
