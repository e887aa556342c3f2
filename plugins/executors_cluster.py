"""Cluster executors (filled in by the scale-out issue)."""
