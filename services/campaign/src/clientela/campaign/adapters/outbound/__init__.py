"""Outbound adapters: SQL storage, outbox staging and the campaign file."""
