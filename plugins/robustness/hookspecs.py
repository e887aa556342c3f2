"""The component kinds of the adversarial robustness family, declared through
``register_kinds`` as a third-party family would (being built: issue 29)."""
