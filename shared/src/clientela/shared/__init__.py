"""Clientela shared event contracts and thin infrastructure."""
