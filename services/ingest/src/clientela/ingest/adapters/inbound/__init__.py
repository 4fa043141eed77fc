"""Inbound adapters: the HTTP API (and later the raw-topic consumer)."""
