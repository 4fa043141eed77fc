"""Running figures over a person's touchpoints; every update commutes, so order never matters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clientela.profile.domain.policy import ProfilePolicy, quantize_money
from clientela.shared.contracts import Direction, ProfileAggregates, Touchpoint, TouchpointKind


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _latest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


def _add(amounts: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    amounts[currency] = amounts.get(currency, Decimal(0)) + amount


@dataclass(slots=True)
class Tally:
    """Aggregates in their mergeable form: counts, sums, minima, maxima and sets."""

    currency: str
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    touchpoint_count: int = 0
    counts_by_kind: dict[str, int] = field(default_factory=dict)
    counts_by_channel: dict[str, int] = field(default_factory=dict)
    inbound_count: int = 0
    outbound_count: int = 0
    purchase_count: int = 0
    # Sales whose amount went into total_spend; the average is taken over these only.
    priced_purchase_count: int = 0
    purchase_days: set[str] = field(default_factory=set)
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    total_spend: Decimal = Decimal(0)
    spend_by_currency: dict[str, Decimal] = field(default_factory=dict)
    cost_to_serve: Decimal = Decimal(0)
    cost_by_currency: dict[str, Decimal] = field(default_factory=dict)

    def add(self, touchpoint: Touchpoint, occurred_at: datetime, policy: ProfilePolicy) -> None:
        """Fold one touchpoint, which happened at occurred_at (UTC), into the figures."""
        self.first_seen_at = _earliest(self.first_seen_at, occurred_at)
        self.last_seen_at = _latest(self.last_seen_at, occurred_at)
        self.touchpoint_count += 1
        kind, channel = touchpoint.kind.value, touchpoint.channel.value
        self.counts_by_kind[kind] = self.counts_by_kind.get(kind, 0) + 1
        self.counts_by_channel[channel] = self.counts_by_channel.get(channel, 0) + 1
        if touchpoint.direction is Direction.INBOUND:
            self.inbound_count += 1
        else:
            self.outbound_count += 1
        self._add_cost(touchpoint, policy)
        sale = touchpoint.sale
        if touchpoint.kind is TouchpointKind.SALE and sale is not None:
            self.purchase_count += 1
            self.purchase_days.add(occurred_at.date().isoformat())
            self.first_purchase_at = _earliest(self.first_purchase_at, occurred_at)
            self.last_purchase_at = _latest(self.last_purchase_at, occurred_at)
            converted = policy.to_base(sale.amount, sale.currency)
            if converted is None:
                _add(self.spend_by_currency, sale.currency, sale.amount)
            else:
                self.total_spend += converted
                self.priced_purchase_count += 1

    def _add_cost(self, touchpoint: Touchpoint, policy: ProfilePolicy) -> None:
        cost = touchpoint.cost
        if cost is None:
            self.cost_to_serve += policy.channel_cost(touchpoint.channel)
            return
        converted = policy.to_base(cost.amount, cost.currency)
        if converted is None:
            _add(self.cost_by_currency, cost.currency, cost.amount)
        else:
            self.cost_to_serve += converted

    def to_contract(self) -> ProfileAggregates:
        """Return the published form of the figures."""
        average = (
            quantize_money(self.total_spend / self.priced_purchase_count)
            if self.priced_purchase_count
            else Decimal(0)
        )
        return ProfileAggregates(
            first_seen_at=self.first_seen_at,
            last_seen_at=self.last_seen_at,
            touchpoint_count=self.touchpoint_count,
            counts_by_kind=dict(sorted(self.counts_by_kind.items())),
            counts_by_channel=dict(sorted(self.counts_by_channel.items())),
            inbound_count=self.inbound_count,
            outbound_count=self.outbound_count,
            purchase_count=self.purchase_count,
            purchase_days=len(self.purchase_days),
            first_purchase_at=self.first_purchase_at,
            last_purchase_at=self.last_purchase_at,
            currency=self.currency,
            total_spend=quantize_money(self.total_spend),
            average_order_value=average,
            spend_by_currency={
                c: quantize_money(a) for c, a in sorted(self.spend_by_currency.items())
            },
            cost_to_serve=quantize_money(self.cost_to_serve),
        )

    def to_state(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot (money as strings, times as ISO 8601)."""
        return {
            "currency": self.currency,
            "first_seen_at": encode_time(self.first_seen_at),
            "last_seen_at": encode_time(self.last_seen_at),
            "touchpoint_count": self.touchpoint_count,
            "counts_by_kind": dict(sorted(self.counts_by_kind.items())),
            "counts_by_channel": dict(sorted(self.counts_by_channel.items())),
            "inbound_count": self.inbound_count,
            "outbound_count": self.outbound_count,
            "purchase_count": self.purchase_count,
            "priced_purchase_count": self.priced_purchase_count,
            "purchase_days": sorted(self.purchase_days),
            "first_purchase_at": encode_time(self.first_purchase_at),
            "last_purchase_at": encode_time(self.last_purchase_at),
            "total_spend": str(self.total_spend),
            "spend_by_currency": {c: str(a) for c, a in sorted(self.spend_by_currency.items())},
            "cost_to_serve": str(self.cost_to_serve),
            "cost_by_currency": {c: str(a) for c, a in sorted(self.cost_by_currency.items())},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Tally:
        """Rebuild from a snapshot written by to_state."""
        return cls(
            currency=state["currency"],
            first_seen_at=decode_time(state.get("first_seen_at")),
            last_seen_at=decode_time(state.get("last_seen_at")),
            touchpoint_count=int(state.get("touchpoint_count", 0)),
            counts_by_kind=dict(state.get("counts_by_kind", {})),
            counts_by_channel=dict(state.get("counts_by_channel", {})),
            inbound_count=int(state.get("inbound_count", 0)),
            outbound_count=int(state.get("outbound_count", 0)),
            purchase_count=int(state.get("purchase_count", 0)),
            priced_purchase_count=int(state.get("priced_purchase_count", 0)),
            purchase_days=set(state.get("purchase_days", [])),
            first_purchase_at=decode_time(state.get("first_purchase_at")),
            last_purchase_at=decode_time(state.get("last_purchase_at")),
            total_spend=Decimal(state.get("total_spend", "0")),
            spend_by_currency={
                c: Decimal(a) for c, a in state.get("spend_by_currency", {}).items()
            },
            cost_to_serve=Decimal(state.get("cost_to_serve", "0")),
            cost_by_currency={c: Decimal(a) for c, a in state.get("cost_by_currency", {}).items()},
        )


def encode_time(value: datetime | None) -> str | None:
    """Return a time as ISO 8601 for a snapshot."""
    return value.isoformat() if value is not None else None


def decode_time(value: str | None) -> datetime | None:
    """Return the aware time an ISO 8601 snapshot field holds (naive means UTC)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
