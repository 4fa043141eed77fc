"""Clientela campaign service: turns tier moves into next-best-channel messages."""
