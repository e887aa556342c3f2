"""Executors that spread runs over processes and clusters."""
