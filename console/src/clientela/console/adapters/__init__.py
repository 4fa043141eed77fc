"""Adapters: the web pages and the Kafka consumer (inbound), services and tables (outbound)."""
