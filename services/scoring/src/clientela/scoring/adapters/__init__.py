"""Adapters between the scoring use cases and the outside world."""
