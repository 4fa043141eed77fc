"""Outbound adapters: the services' HTTP APIs and the read model's tables."""
