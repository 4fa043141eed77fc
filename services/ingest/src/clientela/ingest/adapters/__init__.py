"""Adapters between the ingest use cases and the outside world."""
