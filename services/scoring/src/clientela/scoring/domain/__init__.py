"""Pure scoring rules: value models, Pareto tiers and their plain-language explanations."""
