"""Pure profile model: identity rules, aggregates, lifecycle, survivorship of traits and consent."""
