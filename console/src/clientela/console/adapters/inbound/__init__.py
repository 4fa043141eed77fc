"""Inbound adapters: the web pages and the read-model consumer."""
