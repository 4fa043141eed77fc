"""Clientela scoring: predicted value and A/B/C/P value tiers for every profile."""
