"""Outbound adapters: the cache-backed deduplicator and the Kafka publisher."""
