"""Rows and JSON of the campaign's stored state: contacts and triggers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from clientela.campaign.domain.model import Contact, ScoreFacts, Trigger, TriggerKind
from clientela.shared.contracts import Channel, ConsentStatus, Lifecycle, Segment, Tier


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def aware(value: datetime) -> datetime:
    """Return the datetime as aware UTC (SQLite hands back naive ones)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def profile_json(c: Contact) -> dict[str, Any]:
    """Return the profile facts of a contact as JSON."""
    return {
        "lifecycle": c.lifecycle.value,
        "reachable": sorted(ch.value for ch in c.reachable_channels),
        "consent": {ch.value: status.value for ch, status in c.consent.items()},
        "opted_out_at": _iso(c.opted_out_at),
        "traits": dict(c.traits),
        "purchase_count": c.purchase_count,
        "total_spend": str(c.total_spend),
        "last_purchase_at": _iso(c.last_purchase_at),
        "categories": sorted(c.categories),
    }


def scores_json(c: ScoreFacts) -> dict[str, Any]:
    """Return score facts as JSON."""
    return {
        "lifecycle": c.lifecycle.value,
        "tier": c.tier.value,
        "segment": c.segment.value if c.segment is not None else None,
        "predicted_value": c.predicted_value,
        "potential": c.potential,
        "at_risk": c.at_risk,
    }


def habits_text(habits: Mapping[Channel, float]) -> str:
    """Return channel habits as compact text ("email=0.3;web=0.7")."""
    return ";".join(f"{ch.value}={share:g}" for ch, share in sorted(habits.items()))


def habits_of_text(text: str) -> dict[Channel, float]:
    """Read habits written by habits_text."""
    habits: dict[Channel, float] = {}
    for part in text.split(";"):
        if part:
            name, _, share = part.partition("=")
            habits[Channel(name)] = float(share)
    return habits


class ContactRow(NamedTuple):
    """The columns contact_of reads, for rows read without SQLAlchemy."""

    profile_id: str
    version: int
    profile: dict[str, Any] | None
    scored_version: int
    scores: dict[str, Any] | None
    last_seen_at: datetime | None
    habits: str | None
    complained_at: datetime | None


def contact_of(row: Any) -> Contact:
    """Rebuild a contact from its row."""
    p: dict[str, Any] = row.profile or {}
    s: dict[str, Any] = row.scores or {}
    lifecycle = p.get("lifecycle") if row.version > 0 else s.get("lifecycle", p.get("lifecycle"))
    return Contact(
        profile_id=row.profile_id,
        version=row.version,
        lifecycle=Lifecycle(lifecycle or Lifecycle.PROSPECT.value),
        reachable_channels=frozenset(Channel(c) for c in p.get("reachable", [])),
        consent={Channel(k): ConsentStatus(v) for k, v in p.get("consent", {}).items()},
        opted_out_at=_time(p.get("opted_out_at")),
        traits=dict(p.get("traits", {})),
        habits=(
            habits_of_text(row.habits)
            if row.habits is not None
            else {Channel(k): float(v) for k, v in p.get("habits", {}).items()}
        ),
        purchase_count=int(p.get("purchase_count", 0)),
        total_spend=Decimal(p.get("total_spend", "0")),
        last_seen_at=aware(row.last_seen_at) if row.last_seen_at is not None else None,
        last_purchase_at=_time(p.get("last_purchase_at")),
        categories=frozenset(p.get("categories", [])),
        scored_version=row.scored_version,
        tier=Tier(s["tier"]) if s.get("tier") else None,
        segment=Segment(s["segment"]) if s.get("segment") else None,
        predicted_value=s.get("predicted_value"),
        potential=s.get("potential"),
        at_risk=bool(s.get("at_risk", False)),
        complained_at=aware(row.complained_at) if row.complained_at is not None else None,
    )


def trigger_json(t: Trigger) -> dict[str, Any]:
    """Return a trigger as JSON."""
    return {
        "event_id": t.event_id,
        "kind": t.kind.value,
        "profile_id": t.profile_id,
        "profile_version": t.profile_version,
        "occurred_at": t.occurred_at.isoformat(),
        "lifecycle": t.lifecycle.value if t.lifecycle is not None else None,
        "to_tier": t.to_tier.value if t.to_tier is not None else None,
        "from_tier": t.from_tier.value if t.from_tier is not None else None,
        "predicted_value": t.predicted_value,
        "needs_scores": t.needs_scores,
        "inactive_days": t.inactive_days,
        "correlation_id": t.correlation_id,
        "causation_id": t.causation_id,
        "accepted_at_ms": t.accepted_at_ms,
        "trace": dict(t.trace),
        "episode_at": _iso(t.episode_at),
    }


def trigger_of(data: dict[str, Any]) -> Trigger:
    """Rebuild a trigger from its JSON."""
    occurred = _time(data["occurred_at"])
    assert occurred is not None
    return Trigger(
        event_id=data["event_id"],
        kind=TriggerKind(data["kind"]),
        profile_id=data["profile_id"],
        profile_version=int(data["profile_version"]),
        occurred_at=occurred,
        lifecycle=Lifecycle(data["lifecycle"]) if data.get("lifecycle") else None,
        to_tier=Tier(data["to_tier"]) if data.get("to_tier") else None,
        from_tier=Tier(data["from_tier"]) if data.get("from_tier") else None,
        predicted_value=data.get("predicted_value"),
        needs_scores=bool(data.get("needs_scores", False)),
        inactive_days=data.get("inactive_days"),
        correlation_id=data.get("correlation_id"),
        causation_id=data.get("causation_id"),
        accepted_at_ms=data.get("accepted_at_ms"),
        trace=tuple(sorted((data.get("trace") or {}).items())),
        episode_at=_time(data.get("episode_at")),
    )
