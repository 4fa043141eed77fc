"""Runs the whole Clientela platform on one machine: broker, four services, demo traffic."""
