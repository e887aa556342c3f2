"""The component kinds of the contrastive pre-training family, declared through
``register_kinds`` as a third-party family would (being built: issue 26)."""
