"""Clientela profile service: identity, golden record, timeline, aggregates and consent."""
