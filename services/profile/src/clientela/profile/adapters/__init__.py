"""Adapters: inbound (Kafka, HTTP) and outbound (SQL storage, outbox)."""
