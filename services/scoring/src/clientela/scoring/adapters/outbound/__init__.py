"""Outbound adapters: SQL tables, the unit of work and the read model."""
