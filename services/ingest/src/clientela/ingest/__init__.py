"""Clientela ingest: validates, normalises and deduplicates touchpoints, then publishes them."""
