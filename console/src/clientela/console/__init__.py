"""Clientela web console: customer 360, the customer base and campaign results."""
