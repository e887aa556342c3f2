"""The component kinds of the semi-supervised learning with out-of-domain unlabeled data
family, declared through ``register_kinds`` as a third-party family would (being built:
issue 26)."""
