"""Summaries of the customer base: tier moves per period, and the channel mix per tier."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from clientela.console.domain.charts import MoveColumn

TIER_RANK: Mapping[str, int] = {"P": 0, "C": 1, "B": 2, "A": 3}
# Period lengths a chart may use, shortest first: a demo spans minutes, production years.
BUCKET_LADDER_S: tuple[int, ...] = (
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    6 * 3600,
    86_400,
    7 * 86_400,
    30 * 86_400,
    365 * 86_400,
)


@dataclass(frozen=True, slots=True)
class MoveCount:
    """How many profiles moved from one tier to another within one period."""

    period_start: datetime
    from_tier: str | None
    to_tier: str
    count: int


def bucket_width(first: datetime, last: datetime, max_buckets: int = 24) -> int:
    """Return the shortest period (seconds) that covers first..last in at most max_buckets."""
    span = max(0.0, (last - first).total_seconds())
    for width in BUCKET_LADDER_S:
        if span / width < max_buckets:
            return width
    return BUCKET_LADDER_S[-1]


def period_label(start: datetime, width_s: int) -> str:
    """Label a period by its start, as precisely as its length needs."""
    if width_s < 60:
        return start.strftime("%H:%M:%S")
    if width_s < 86_400:
        return start.strftime("%H:%M")
    if width_s < 30 * 86_400:
        return start.strftime("%Y-%m-%d")
    return start.strftime("%Y-%m")


def period_words(width_s: int) -> str:
    """Name a period length in words, in the largest whole unit."""
    for unit, seconds in (("week", 604_800), ("day", 86_400), ("hour", 3600), ("minute", 60)):
        if width_s >= seconds and width_s % seconds == 0:
            n = width_s // seconds
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{width_s} second{'s' if width_s != 1 else ''}"


def direction(from_tier: str | None, to_tier: str) -> str:
    """Return 'entered', 'up' or 'down' for a move between tiers."""
    if from_tier is None:
        return "entered"
    return "up" if TIER_RANK.get(to_tier, 0) > TIER_RANK.get(from_tier, 0) else "down"


def transition(from_tier: str | None, to_tier: str) -> str:
    """Name a move, e.g. 'C→B' (or '→A' for a first tier)."""
    return f"{from_tier or ''}→{to_tier}"


@dataclass(frozen=True, slots=True)
class Migrations:
    """Tier moves over time, ready to draw, with the totals per transition."""

    columns: list[MoveColumn]
    keys: list[str]
    totals: dict[str, int]
    entered: dict[str, int]
    width_s: int

    @property
    def period(self) -> str:
        """Name the period length in words, e.g. '10 seconds' or '1 day'."""
        return period_words(self.width_s)


def migrations(
    counts: Iterable[MoveCount],
    width_s: int,
    span: tuple[datetime, datetime] | None = None,
) -> Migrations:
    """Turn per-period move counts into diverging columns: up moves above, down below.

    With a span, every period in it gets a column, quiet ones too, so time reads evenly.
    """
    up: dict[datetime, dict[str, int]] = defaultdict(dict)
    down: dict[datetime, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = defaultdict(int)
    entered: dict[str, int] = defaultdict(int)
    periods: set[datetime] = set()
    for c in counts:
        periods.add(c.period_start)
        way = direction(c.from_tier, c.to_tier)
        if way == "entered":
            entered[c.to_tier] += c.count
            continue
        key = transition(c.from_tier, c.to_tier)
        side = up if way == "up" else down
        side[c.period_start][key] = side[c.period_start].get(key, 0) + c.count
        totals[key] += c.count
    if span is not None:
        first = epoch(span[0]) - epoch(span[0]) % width_s
        periods.update(from_epoch(s) for s in range(first, epoch(span[1]) + 1, width_s))
    keys = sorted(totals, key=_transition_order)
    columns = [
        MoveColumn(period_label(p, width_s), up.get(p, {}), down.get(p, {}))
        for p in sorted(periods)
    ]
    return Migrations(columns, keys, dict(totals), dict(entered), width_s)


def _transition_order(key: str) -> tuple[int, int, str]:
    source, _, target = key.partition("→")
    rise = TIER_RANK.get(target, 0) - TIER_RANK.get(source, 0)
    return (0 if rise > 0 else 1, -TIER_RANK.get(target, 0), key)


def channel_keys(mix: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Return the channels of a mix, the most used overall first."""
    totals: dict[str, float] = defaultdict(float)
    for per_channel in mix.values():
        for channel, n in per_channel.items():
            totals[channel] += n
    return sorted(totals, key=lambda ch: (-totals[ch], ch))


def ordered_tiers(tiers: Iterable[str]) -> list[str]:
    """Return tiers best first (A, B, C, P), unknown ones last."""
    return sorted(set(tiers), key=lambda t: (-TIER_RANK.get(t, -1), t))


def pareto_cuts(tier_counts: Mapping[str, int]) -> tuple[float, float] | None:
    """Return the shares of customers at which tiers A and B end (prospects left out)."""
    customers = sum(tier_counts.get(t, 0) for t in ("A", "B", "C"))
    if not customers:
        return None
    a = tier_counts.get("A", 0) / customers
    return a, a + tier_counts.get("B", 0) / customers


def epoch(at: datetime) -> int:
    """Return whole seconds since the epoch (the read model's time column)."""
    return int(at.astimezone(UTC).timestamp())


def from_epoch(seconds: int) -> datetime:
    """Return the UTC moment of an epoch second."""
    return datetime.fromtimestamp(seconds, UTC)


def share(part: float, whole: float) -> float | None:
    """Return part / whole, or None when there is no whole."""
    return part / whole if whole else None


def sorted_by(rows: Sequence[MoveCount]) -> list[MoveCount]:
    """Return move counts in time order."""
    return sorted(rows, key=lambda r: (r.period_start, r.from_tier or "", r.to_tier))
