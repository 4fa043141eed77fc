"""Use cases of the campaign service and the ports they need."""
