"""Plain-language explanations of scores, for people who act on them rather than compute them."""

from __future__ import annotations

from collections.abc import Callable

from clientela.shared.contracts import Reason, Tier

TIER_MEANING: dict[Tier, str] = {
    Tier.A: (
        "Tier A: among the few customers who together bring most of the value we expect. "
        "Keep them buying more and watch closely for signs of slipping."
    ),
    Tier.B: (
        "Tier B: the next group of valuable customers. The goal is to move them up to A "
        "with cross-sell and up-sell."
    ),
    Tier.C: (
        "Tier C: customers who bring a small share of the expected value. Serve them at low "
        "cost and look for the ones who could grow into B."
    ),
    Tier.P: (
        "Tier P: a prospect who has not bought yet. Speak to them with acquisition offers, "
        "not loyalty messages."
    ),
}


def _number(value: float | str | None) -> str:
    if isinstance(value, float | int):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return "unknown" if value is None else str(value)


def _money(reason: Reason) -> str:
    currency = f" {reason.detail}" if reason.detail else ""
    return f"{_number(reason.value)}{currency}"


_EXPLAINERS: dict[str, Callable[[Reason], str]] = {
    "predicted_value": lambda r: (
        f"We expect this person to be worth about {_number(r.value)} to us ({r.detail})."
    ),
    "expected_purchases": lambda r: (
        f"We expect about {_number(r.value)} more purchase(s) from them ({r.detail})."
    ),
    "expected_order_value": lambda r: (
        f"When they buy, we expect them to spend about {_number(r.value)} each time: their own "
        "average, pulled towards everyone's average the fewer purchases we have seen."
    ),
    "probability_alive": lambda r: (
        f"The chance they are still an active customer is {_percent(r.value)}: it falls the "
        "longer they stay away compared with how often they used to buy."
    ),
    "total_spend": lambda r: f"They have spent {_money(r)} with us in total.",
    "purchase_count": lambda r: (
        "They have not bought anything yet."
        if r.value == 0
        else f"They have made {_number(r.value)} purchase(s)."
    ),
    "purchase_days": lambda r: f"They bought on {_number(r.value)} different day(s).",
    "days_since_last_purchase": lambda r: (
        f"Their last purchase was {_number(r.value)} day(s) ago."
        + (f" ({r.detail})" if r.detail else "")
    ),
    "half_life_days": lambda r: (
        f"Spend counts half as much after {_number(r.value)} days without a new purchase, "
        "and a quarter after twice that."
    ),
    "rfm": lambda r: (
        f"Recency-frequency-money groups {r.value} ({r.detail}): higher means more recent, "
        "more frequent and bigger spending than other customers."
    ),
    "cost_to_serve": lambda r: f"Serving them has cost about {_number(r.value)} so far.",
    "margin_after_cost": lambda r: (
        f"After the cost to serve, they brought us {_number(r.value)} ({r.detail})."
    ),
    "low_value_high_cost": lambda r: (
        "They cost more to serve than they bring: keep contact with them cheap."
    ),
    "segment_rule": lambda r: f"Relationship segment: {r.detail}.",
    "at_risk": lambda r: (
        f"A top customer who may be slipping away: only {_percent(r.value)} chance they are "
        "still buying. Reach out now."
    ),
    "potential": lambda r: (
        r.detail[:1].upper() + r.detail[1:] + "."
        if r.value is None
        else f"They resemble our best customers, as those looked before their first "
        f"purchase, at {_percent(r.value)}."
    ),
    "potential_channel_mix": lambda r: (
        f"{_percent(r.value)} of the channels they use match ({r.detail})."
    ),
    "potential_engagement": lambda r: f"Engagement match {_percent(r.value)}: {r.detail}.",
    "potential_inbound": lambda r: f"Initiative match {_percent(r.value)}: {r.detail}.",
    "a_cutoff": lambda r: (
        "Tier A is empty for now."
        if r.value is None
        else f"Customers expected to be worth at least {_number(r.value)} are in tier A "
        f"(the {r.detail})."
    ),
    "b_cutoff": lambda r: (
        "Tier B is empty for now."
        if r.value is None
        else f"Customers expected to be worth at least {_number(r.value)} (and below the "
        "tier A line) are in tier B."
    ),
    "customer_count": lambda r: f"Tiers were set by ranking {_number(r.value)} customer(s).",
    "hysteresis": lambda r: (
        f"To change tier a customer must pass the line by more than {_percent(r.value)}, so "
        "nobody flips back and forth on a small change."
    ),
}


def _percent(value: float | str | None) -> str:
    return f"{float(value):.0%}" if isinstance(value, float | int) else "unknown"


def explain(reason: Reason) -> str:
    """Return one sentence that says what a reason means for this customer."""
    explainer = _EXPLAINERS.get(reason.code)
    if explainer is not None:
        return explainer(reason)
    value = "" if reason.value is None else f": {_number(reason.value)}"
    return f"{reason.detail or reason.code}{value}."


def explain_tier(tier: Tier) -> str:
    """Return what a tier means and what to do with its customers."""
    return TIER_MEANING[tier]
