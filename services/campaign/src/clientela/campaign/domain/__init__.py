"""Pure campaign logic: definitions, matching, holdouts and channel choice."""
