"""A synthetic customer population, deterministic by seed, emitting native touchpoints.

Heterogeneity follows what the tiers are meant to find: Pareto-distributed spend, a minority of
frequent buyers, prospects who never buy, people with their own channel habits, and several
identifiers per person that appear over time (anonymous web visits first, an email later, a
customer id at the first purchase).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

CHANNELS = ("web", "email", "phone", "branch", "app")
CATEGORIES = ("shoes", "bags", "outerwear", "knitwear", "accessories", "home")
KIND_OF_CHANNEL = {
    "web": "web_visit",
    "app": "app_session",
    "email": "email",
    "phone": "phone_call",
    "branch": "branch_visit",
}


@dataclass
class Person:
    """One synthetic person and the identifiers they have revealed so far."""

    index: int
    seed: int
    is_buyer: bool
    spend_scale: float
    purchase_rate: float
    habits: list[float]
    anonymous_id: str
    email: str | None
    phone: str | None
    customer_id: str | None = None
    revealed: dict[str, str] = field(default_factory=dict)
    purchases: int = 0


@dataclass(frozen=True)
class PopulationSpec:
    """Size and shape of a population."""

    people: int = 1_000
    seed: int = 42
    buyer_share: float = 0.6
    pareto_shape: float = 1.16  # 80/20
    days: int = 365


class Population:
    """Generates touchpoints for a population, in event-time order per person."""

    def __init__(self, spec: PopulationSpec | None = None) -> None:
        self.spec = spec or PopulationSpec()
        rng = random.Random(self.spec.seed)
        self.people = [self._person(rng, i) for i in range(self.spec.people)]

    def _person(self, rng: random.Random, i: int) -> Person:
        seed = self.spec.seed
        weights = [rng.random() ** 3 for _ in CHANNELS]  # cubed: most people favour one channel
        total = sum(weights)
        return Person(
            index=i,
            seed=seed,
            is_buyer=rng.random() < self.spec.buyer_share,
            spend_scale=20 * rng.paretovariate(self.spec.pareto_shape),
            purchase_rate=min(0.9, rng.expovariate(1 / 0.15)),
            habits=[w / total for w in weights],
            anonymous_id=f"anon-{seed}-{i}",
            email=f"person{i}.{seed}@people.clientela.dev" if rng.random() < 0.9 else None,
            phone=f"+1202{rng.randint(2_000_000, 9_999_999)}" if rng.random() < 0.5 else None,
        )

    def touchpoints(self, count: int, start: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Yield `count` native touchpoints spread over the population and the time span."""
        rng = random.Random(self.spec.seed * 7919 + count)
        now = start or datetime.now(UTC)
        origin = now - timedelta(days=self.spec.days)
        step = timedelta(days=self.spec.days) / max(count, 1)
        for n in range(count):
            person = self._pick(rng)
            yield self._touchpoint(rng, person, n, origin + step * n)

    def _pick(self, rng: random.Random) -> Person:
        # Activity is skewed: low indexes are picked far more often, leaving a long tail of
        # occasional visitors.
        u = rng.random()
        size = len(self.people)
        index = int(size * u**1.8)
        return self.people[min(index, size - 1)]

    def _touchpoint(self, rng: random.Random, p: Person, n: int, at: datetime) -> dict[str, Any]:
        channel = rng.choices(CHANNELS, weights=p.habits)[0]
        buys = p.is_buyer and rng.random() < p.purchase_rate
        ids = self._identifiers(rng, p, buys, channel)
        event: dict[str, Any] = {
            "event_id": f"sim-{p.seed}-{n}",
            "occurred_at": at.isoformat(),
            "channel": channel if channel != "email" or not buys else "web",
            "direction": "inbound",
            "identifiers": ids,
        }
        if buys:
            p.purchases += 1
            amount = Decimal(str(round(p.spend_scale * rng.uniform(0.5, 1.5), 2)))
            category = CATEGORIES[(p.index + rng.randrange(2)) % len(CATEGORIES)]
            event["kind"] = "sale"
            event["sale"] = {
                "order_id": f"O-{p.seed}-{n}",
                "amount": str(amount),
                "currency": "EUR",
                "items": [
                    {
                        "sku": f"SKU-{category}-{n % 50}",
                        "category": category,
                        "quantity": 1,
                        "unit_price": str(amount),
                    }
                ],
            }
            return event
        kind = KIND_OF_CHANNEL[channel]
        event["kind"] = kind
        if kind == "web_visit":
            event["web_visit"] = {"page_views": 1 + int(rng.expovariate(0.5))}
        elif kind == "email":
            event["direction"] = "outbound"
            event["email"] = {"opened": rng.random() < 0.4, "clicked": rng.random() < 0.1}
        elif kind == "phone_call":
            event["call"] = {
                "duration_seconds": int(rng.expovariate(1 / 240)),
                "outcome": rng.choice(["answered", "resolved", "no_answer"]),
            }
            event["agent"] = {"agent_id": f"agent-{rng.randint(1, 40)}", "role": "call_agent"}
        elif kind == "branch_visit":
            event["branch_visit"] = {"branch_id": f"B{p.index % 12:02d}"}
            event["agent"] = {"agent_id": f"rep-{rng.randint(1, 25)}", "role": "sales_rep"}
        else:
            event["properties"] = {"screens": 1 + int(rng.expovariate(0.3))}
        if p.email and "email" in ids and rng.random() < 0.05:
            event["consent"] = [{"channel": "email", "status": "opted_in"}]
        return event

    def _identifiers(
        self, rng: random.Random, p: Person, buys: bool, channel: str
    ) -> dict[str, str]:
        # Identifiers appear over time: the anonymous id first, an email once they sign up, a
        # customer id at the first purchase; later touchpoints carry a mix of them.
        if p.email and "email" not in p.revealed and (buys or rng.random() < 0.3):
            p.revealed["email"] = p.email
        if buys and p.customer_id is None:
            p.customer_id = f"C-{p.seed}-{p.index:07d}"
            p.revealed["customer_id"] = p.customer_id
        if p.phone and channel == "phone":
            p.revealed["phone"] = p.phone
        ids = {"anonymous_id": p.anonymous_id} if channel in ("web", "app") else {}
        for kind, value in p.revealed.items():
            if rng.random() < 0.8 or not ids:
                ids[kind] = value
        if buys and p.customer_id is not None:
            ids["customer_id"] = p.customer_id  # a sale always names the customer account
        if not ids:
            ids["anonymous_id"] = p.anonymous_id
        return ids


def pareto_share(values: list[float], top_fraction: float = 0.2) -> float:
    """Return the share of the total held by the top fraction of values."""
    ranked = sorted(values, reverse=True)
    total = sum(ranked)
    if total <= 0:
        return 0.0
    return sum(ranked[: max(1, math.ceil(len(ranked) * top_fraction))]) / total
