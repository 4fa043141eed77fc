"""Adapters between the campaign use cases and the outside world."""
