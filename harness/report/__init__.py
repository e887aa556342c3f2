"""Leaderboards built from MLflow runs."""
