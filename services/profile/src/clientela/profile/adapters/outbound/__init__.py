"""Outbound adapters: SQL tables, unit of work, read queries."""
