"""Inbound adapters: the Kafka translator and the HTTP routes."""
