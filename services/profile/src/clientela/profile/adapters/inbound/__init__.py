"""Inbound adapters: translate Kafka batches and HTTP requests into use-case calls."""
