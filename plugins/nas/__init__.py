"""The NAS family: search spaces, DARTS-style search strategies, selectors and the ``nas`` task."""
