"""Persistence: models, engine and repositories."""
