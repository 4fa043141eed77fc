"""Running figures over a person's touchpoints; every update commutes, so order never matters."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import msgspec

from clientela.profile.domain.policy import MONEY_QUANTUM, ProfilePolicy, quantize_money
from clientela.profile.domain.published import PublishedAggregates
from clientela.shared.contracts import (
    Channel,
    Direction,
    ProfileAggregates,
    TouchpointKind,
)
from clientela.shared.readers.touchpoint import TouchpointView

CLOSED_CASE_STATUSES = frozenset({"closed", "resolved", "cancelled", "canceled"})
_DAYS_PER_MONTH = 30.436875


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _latest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate > current else current


def _add(amounts: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    amounts[currency] = amounts.get(currency, Decimal(0)) + amount


def _sum_into(target: dict[str, Any], source: Mapping[str, Any]) -> None:
    for key, value in source.items():
        target[key] = target[key] + value if key in target else value


# Enum .value is a property lookup; the hot path reads these plain strings instead.
_VALUE: dict[Channel | TouchpointKind, str] = {
    member: member.value for enum in (Channel, TouchpointKind) for member in enum
}


_MONTHS: dict[int, str] = {}


def _month_of(moment: datetime) -> str:
    """Return the "YYYY-MM" of a time (formatted once per month seen, then looked up)."""
    index = moment.year * 12 + moment.month
    found = _MONTHS.get(index)
    if found is None:
        if len(_MONTHS) >= 4096:
            _MONTHS.clear()
        found = _MONTHS[index] = f"{moment.year:04d}-{moment.month:02d}"
    return found


@functools.lru_cache(maxsize=4096)
def _month_index(month: str) -> int:
    return int(month[:4]) * 12 + int(month[5:7]) - 1


@functools.lru_cache(maxsize=4096)
def _decay(age_months: int, half_life_months: float) -> float:
    return float(0.5 ** (age_months / half_life_months))


_DECAY_TABLE_MONTHS = 240


@functools.lru_cache(maxsize=16)
def _half_life_months(half_life: timedelta) -> float:
    return half_life.total_seconds() / 86_400 / _DAYS_PER_MONTH


@functools.lru_cache(maxsize=16)
def _decay_table(half_life_months: float) -> tuple[float, ...]:
    """Return the decay of each age in months (the same values `_decay` gives)."""
    return tuple(_decay(age, half_life_months) for age in range(_DECAY_TABLE_MONTHS))


class CaseState(msgspec.Struct, frozen=True, array_like=True):
    """The latest known status of a support case; the stamp decides which status is latest."""

    status: str
    at: datetime
    event_id: str

    def open(self) -> bool:
        """Return whether the case is still open."""
        return self.status not in CLOSED_CASE_STATUSES

    def newer_than(self, other: CaseState | None) -> bool:
        """Return whether this status supersedes other."""
        return other is None or (self.at, self.event_id) > (other.at, other.event_id)


def _case_of(touchpoint: TouchpointView, event_id: str, at: datetime) -> tuple[str, CaseState]:
    props = touchpoint.properties
    case_id = props.get("case_id")
    status = props.get("case_status", props.get("status"))
    return (
        str(case_id) if case_id is not None else event_id,
        CaseState(str(status).lower() if status is not None else "open", at, event_id),
    )


class FirstSale(msgspec.Struct, frozen=True, array_like=True):
    """The earliest sale in event time (the event id breaks ties) and its base amount.

    `amount` is None when the sale's currency has no rate (it is not in total_spend either)
    or when the snapshot predates this figure (see `Tally.from_state`).
    """

    at: datetime
    event_id: str
    amount: Decimal | None

    def earlier_than(self, other: FirstSale | None) -> bool:
        """Return whether this sale precedes other."""
        return other is None or (self.at, self.event_id) < (other.at, other.event_id)


class Tally(msgspec.Struct):
    """Aggregates in their mergeable form: counts, sums, minima, maxima and sets.

    The field names are the snapshot's keys: a stored snapshot decodes straight into a Tally.
    """

    currency: str
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    touchpoint_count: int = 0
    counts_by_kind: dict[str, int] = msgspec.field(default_factory=dict)
    counts_by_channel: dict[str, int] = msgspec.field(default_factory=dict)
    inbound_count: int = 0
    outbound_count: int = 0
    purchase_count: int = 0
    # Sales whose amount went into total_spend; the average is taken over these only.
    priced_purchase_count: int = 0
    purchase_days: set[str] = msgspec.field(default_factory=set)
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    total_spend: Decimal = Decimal(0)
    spend_by_currency: dict[str, Decimal] = msgspec.field(default_factory=dict)
    cost_to_serve: Decimal = Decimal(0)
    cost_by_currency: dict[str, Decimal] = msgspec.field(default_factory=dict)
    # Line items bought per product category.
    categories: dict[str, int] = msgspec.field(default_factory=dict)
    # Inbound touchpoints per channel per month ("YYYY-MM"): integers commute, decay is
    # applied when the preference is read, relative to the latest such month.
    inbound_months: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    cases: dict[str, CaseState] = msgspec.field(default_factory=dict)
    first_sale: FirstSale | None = None

    def add(
        self,
        touchpoint: TouchpointView,
        occurred_at: datetime,
        policy: ProfilePolicy,
        event_id: str = "",
    ) -> None:
        """Fold one touchpoint, which happened at occurred_at (UTC), into the figures."""
        seen_first, seen_last = self.first_seen_at, self.last_seen_at
        if seen_first is None or occurred_at < seen_first:
            self.first_seen_at = occurred_at
        if seen_last is None or occurred_at > seen_last:
            self.last_seen_at = occurred_at
        self.touchpoint_count += 1
        kind, channel = _VALUE[touchpoint.kind], _VALUE[touchpoint.channel]
        counts = self.counts_by_kind
        counts[kind] = counts.get(kind, 0) + 1
        counts = self.counts_by_channel
        counts[channel] = counts.get(channel, 0) + 1
        if touchpoint.direction is Direction.INBOUND:
            self.inbound_count += 1
            months = self.inbound_months.get(channel)
            if months is None:
                months = self.inbound_months[channel] = {}
            month = _month_of(occurred_at)
            months[month] = months.get(month, 0) + 1
        else:
            self.outbound_count += 1
        if touchpoint.cost is None:
            self.cost_to_serve += policy.channel_cost(touchpoint.channel)
        else:
            self._add_cost(touchpoint, policy)
        if touchpoint.kind is TouchpointKind.SUPPORT_CASE:
            case_id, case = _case_of(touchpoint, event_id, occurred_at)
            if case.newer_than(self.cases.get(case_id)):
                self.cases[case_id] = case
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
            first = FirstSale(occurred_at, event_id, converted)
            if first.earlier_than(self.first_sale):
                self.first_sale = first
            for item in sale.items:
                if item.category:
                    self.categories[item.category] = self.categories.get(item.category, 0) + 1

    def merge(self, other: Tally) -> None:
        """Fold another person's figures into these (both describe one person now)."""
        if other.first_seen_at is not None:
            self.first_seen_at = _earliest(self.first_seen_at, other.first_seen_at)
        if other.last_seen_at is not None:
            self.last_seen_at = _latest(self.last_seen_at, other.last_seen_at)
        if other.first_purchase_at is not None:
            self.first_purchase_at = _earliest(self.first_purchase_at, other.first_purchase_at)
        if other.last_purchase_at is not None:
            self.last_purchase_at = _latest(self.last_purchase_at, other.last_purchase_at)
        self.touchpoint_count += other.touchpoint_count
        _sum_into(self.counts_by_kind, other.counts_by_kind)
        _sum_into(self.counts_by_channel, other.counts_by_channel)
        self.inbound_count += other.inbound_count
        self.outbound_count += other.outbound_count
        self.purchase_count += other.purchase_count
        self.priced_purchase_count += other.priced_purchase_count
        self.purchase_days |= other.purchase_days
        self.total_spend += other.total_spend
        _sum_into(self.spend_by_currency, other.spend_by_currency)
        self.cost_to_serve += other.cost_to_serve
        _sum_into(self.cost_by_currency, other.cost_by_currency)
        _sum_into(self.categories, other.categories)
        for channel, months in other.inbound_months.items():
            _sum_into(self.inbound_months.setdefault(channel, {}), months)
        for case_id, case in other.cases.items():
            if case.newer_than(self.cases.get(case_id)):
                self.cases[case_id] = case
        if other.first_sale is not None and other.first_sale.earlier_than(self.first_sale):
            self.first_sale = other.first_sale

    def channel_preference(self, policy: ProfilePolicy) -> dict[str, float]:
        """Return each inbound channel's share of recency-weighted inbound contacts."""
        if not self.inbound_months:
            return {}
        if len(self.inbound_months) == 1:
            # One channel holds every weight (each month counted is at least one contact).
            ((channel, months),) = self.inbound_months.items()
            return {channel: 1.0} if months else {}
        # "YYYY-MM" sorts as time does: the latest month is the greatest string.
        newest = ""
        for months in self.inbound_months.values():
            for month in months:
                if month > newest:
                    newest = month
        if not newest:
            return {}
        latest = _month_index(newest)
        half_life_months = _half_life_months(policy.preference_half_life)
        decay = _decay_table(half_life_months)
        weights: list[tuple[str, float]] = []
        total = 0.0
        for channel, months in self.inbound_months.items():
            weight = 0.0
            for month, count in months.items():
                age = latest - _month_index(month)
                weight += count * (
                    decay[age] if age < _DECAY_TABLE_MONTHS else _decay(age, half_life_months)
                )
            weights.append((channel, weight))
            total += weight
        if total <= 0:
            return {}
        if len(weights) == 1:
            channel, weight = weights[0]
            return {channel: round(weight / total, 4)}
        weights.sort()
        return {c: round(w / total, 4) for c, w in weights}

    def _add_cost(self, touchpoint: TouchpointView, policy: ProfilePolicy) -> None:
        cost = touchpoint.cost
        if cost is None:
            self.cost_to_serve += policy.channel_cost(touchpoint.channel)
            return
        converted = policy.to_base(cost.amount, cost.currency)
        if converted is None:
            _add(self.cost_by_currency, cost.currency, cost.amount)
        else:
            self.cost_to_serve += converted

    def published(self, policy: ProfilePolicy) -> PublishedAggregates:
        """Return the published figures, laid out as ProfileAggregates."""
        preference = self.channel_preference(policy)
        preferred: str | None = None
        if preference:
            # The greatest share; a tie goes to the channel listed first in the contract.
            best = (0.0, 0)
            for channel, share in preference.items():
                rank = (-share, _CHANNEL_ORDER.get(channel, _CHANNEL_COUNT))
                if preferred is None or rank < best:
                    preferred, best = channel, rank
        # quantize_money inlined: four calls per announced profile.
        quantum, rounding = MONEY_QUANTUM, ROUND_HALF_EVEN
        average = (
            (self.total_spend / self.priced_purchase_count).quantize(quantum, rounding)
            if self.priced_purchase_count
            else _ZERO_MONEY
        )
        first = self.first_sale
        open_cases = (
            sum(1 for case in self.cases.values() if case.status not in _CLOSED)
            if self.cases
            else 0
        )
        return PublishedAggregates(
            self.first_seen_at,
            self.last_seen_at,
            self.touchpoint_count,
            self.counts_by_kind,
            self.counts_by_channel,
            self.inbound_count,
            self.outbound_count,
            self.purchase_count,
            len(self.purchase_days),
            self.first_purchase_at,
            self.last_purchase_at,
            self.currency,
            self.total_spend.quantize(quantum, rounding),
            (
                first.amount.quantize(quantum, rounding)
                if first is not None and first.amount is not None
                else _ZERO_MONEY
            ),
            average,
            {c: quantize_money(a) for c, a in self.spend_by_currency.items()}
            if self.spend_by_currency
            else {},
            self.cost_to_serve.quantize(quantum, rounding),
            open_cases,
            len(self.cases) - open_cases,
            self.categories,
            preference,
            (
                _CHANNEL_BY_VALUE.get(preferred) or Channel(preferred)
                if preferred is not None
                else None
            ),
        )

    def to_contract(self, policy: ProfilePolicy) -> ProfileAggregates:
        """Return the published form of the figures."""
        # Built without re-validation: every field is typed and derived here; the tests check
        # that the result validates.
        published = msgspec.structs.asdict(self.published(policy))
        for name in ("counts_by_kind", "counts_by_channel", "purchase_categories"):
            published[name] = dict(sorted(published[name].items()))
        return ProfileAggregates.model_construct(**published)

    def to_state(self) -> dict[str, Any]:
        """Return a JSON-ready snapshot (money as strings, times as ISO 8601, keys sorted)."""
        state: dict[str, Any] = msgspec.to_builtins(self, order="deterministic")
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Tally:
        """Rebuild from a snapshot written by to_state (any layout)."""
        tally = msgspec.convert(state, type=cls)
        tally.assume_unknown_first_sale()
        return tally

    def assume_unknown_first_sale(self) -> None:
        """Mark the first sale as unknown when a snapshot older than that figure has sales.

        Its time is known (first_purchase_at), so later sales still cannot replace it and an
        earlier one arriving late still can; only its amount stays unknown until a rebuild.
        """
        if self.first_sale is None and self.first_purchase_at is not None:
            self.first_sale = FirstSale(self.first_purchase_at, "", None)


_ZERO_MONEY = Decimal(0)
_CLOSED = CLOSED_CASE_STATUSES
_CHANNEL_ORDER = {channel.value: index for index, channel in enumerate(Channel)}
_CHANNEL_COUNT = len(Channel)
_CHANNEL_BY_VALUE = {channel.value: channel for channel in Channel}


def decode_time(value: str | None) -> datetime | None:
    """Return the aware time an ISO 8601 snapshot field holds (naive means UTC)."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
