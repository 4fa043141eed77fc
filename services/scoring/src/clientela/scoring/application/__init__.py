"""Use cases of the scoring service and the ports they need."""
