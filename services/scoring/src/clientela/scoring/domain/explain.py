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
        f"We expect this person to be worth about {_money(r)} to us: what they spent, "
        "discounted the longer it has been since they last bought."
    ),
    "total_spend": lambda r: f"They have spent {_money(r)} with us in total.",
    "purchase_count": lambda r: (
        "They have not bought anything yet."
        if r.value == 0
        else f"They have made {_number(r.value)} purchase(s)."
    ),
    "days_since_last_purchase": lambda r: (
        f"Their last purchase was {_number(r.value)} day(s) ago."
        + (f" ({r.detail})" if r.detail else "")
    ),
    "half_life_days": lambda r: (
        f"Spend counts half as much after {_number(r.value)} days without a new purchase, "
        "and a quarter after twice that."
    ),
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
}


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
