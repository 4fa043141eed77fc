"""What campaigns know of a person, and the triggers found in how that knowledge changes."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from clientela.campaign.domain.model import (
    Contact,
    ScoreFacts,
    TraceFields,
    TraitValue,
    Trigger,
    TriggerKind,
)
from clientela.shared.contracts import Channel, Lifecycle, Tier, TierMove, derived_event_id

CATEGORIES_TRAIT = "categories"
# Habit shares are kept in steps of a tenth: a lift within 5% of the exact one, and a contact
# view that does not change with every touchpoint of a person.
HABIT_STEP = 0.1
# Channel by name: a dict lookup, where Channel(name) costs an enum call per entry.
_CHANNELS: Mapping[str, Channel] = {c.value: c for c in Channel}


def categories_of(
    purchase_categories: Mapping[str, int], traits: Mapping[str, TraitValue]
) -> frozenset[str]:
    """Return the categories bought: the aggregates' counts, else a comma-separated trait."""
    if purchase_categories:
        return frozenset(str(k) for k, v in purchase_categories.items() if v)
    trait = traits.get(CATEGORIES_TRAIT)
    if isinstance(trait, str):
        return frozenset(part.strip() for part in trait.split(",") if part.strip())
    return frozenset()


def habits_of(
    inbound_preference: Mapping[str, float], counts_by_channel: Mapping[str, int]
) -> dict[Channel, float]:
    """Return the share of the person's own contacts per channel (inbound when published)."""
    raw: Mapping[str, float] = inbound_preference or counts_by_channel
    total = sum(v for v in raw.values() if v > 0)
    habits: dict[Channel, float] = {}
    if total <= 0:
        return habits
    for name, value in raw.items():
        channel = _CHANNELS.get(name)
        if channel is None:
            continue  # a channel this service cannot send on tells nothing about outbound
        share = round(max(float(value), 0.0) / total / HABIT_STEP) * HABIT_STEP
        if share > 0:
            habits[channel] = round(share, 1)
    return habits


def coarse_time(value: datetime | None, resolution: timedelta) -> datetime | None:
    """Return the time rounded down to the resolution (on the Unix epoch grid)."""
    if value is None or resolution <= timedelta(0):
        return value
    step = resolution.total_seconds()
    seconds = value.timestamp()
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def with_profile_facts(facts: Contact, previous: Contact | None) -> Contact:
    """Fold a profile's facts into what is known (scores and complaints are kept)."""
    if previous is None:
        return facts
    return replace(
        facts,
        scored_version=previous.scored_version,
        tier=previous.tier,
        segment=previous.segment,
        predicted_value=previous.predicted_value,
        potential=previous.potential,
        at_risk=previous.at_risk,
        complained_at=previous.complained_at,
    )


def contact_with_scores(scores: ScoreFacts, previous: Contact | None) -> Contact:
    """Fold scores into what is known; a person only scored so far gets a minimal contact."""
    if previous is None:
        return Contact(
            profile_id=scores.profile_id,
            version=0,
            lifecycle=scores.lifecycle,
            scored_version=scores.profile_version,
            tier=scores.tier,
            segment=scores.segment,
            predicted_value=scores.predicted_value,
            potential=scores.potential,
            at_risk=scores.at_risk,
        )
    # Built field by field: dataclasses.replace costs several times more, once per person.
    p = previous
    return Contact(
        profile_id=p.profile_id,
        version=p.version,
        lifecycle=p.lifecycle,
        reachable_channels=p.reachable_channels,
        consent=p.consent,
        opted_out_at=p.opted_out_at,
        traits=p.traits,
        habits=p.habits,
        purchase_count=p.purchase_count,
        total_spend=p.total_spend,
        last_seen_at=p.last_seen_at,
        last_purchase_at=p.last_purchase_at,
        categories=p.categories,
        scored_version=scores.profile_version,
        tier=scores.tier,
        segment=scores.segment,
        predicted_value=scores.predicted_value,
        potential=scores.potential,
        at_risk=scores.at_risk,
        complained_at=p.complained_at,
    )


def _digest(parts: object, size: int = 8) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=size).hexdigest()


def profile_fingerprint(c: Contact) -> str:
    """Return a digest of the profile facts decisions read, then one of the purchase facts.

    The last-seen time is not in it: it is stored on its own and advanced cheaply.
    """
    facts = _digest(
        (
            c.lifecycle.value,
            sorted(ch.value for ch in c.reachable_channels),
            sorted((ch.value, st.value) for ch, st in c.consent.items()),
            c.opted_out_at.isoformat() if c.opted_out_at else None,
            sorted(c.traits.items(), key=lambda kv: kv[0]),
            sorted((ch.value, v) for ch, v in c.habits.items()),
        ),
        4,
    )
    return facts + purchases_fingerprint(c)


def purchases_fingerprint(c: Contact) -> str:
    """Return a digest of what a person bought (count, spend, last time, categories)."""
    return _digest(
        (
            c.purchase_count,
            str(c.total_spend),
            c.last_purchase_at.isoformat() if c.last_purchase_at else None,
            sorted(c.categories),
        ),
        4,
    )


# Predicted values within this relative step of the stored one are not written again.
VALUE_STEP = 0.05


def scores_fingerprint(c: ScoreFacts) -> str:
    """Return a digest of the score facts decisions read, the value in 5% steps."""
    value = c.predicted_value
    bucket = round(math.log(value) / math.log1p(VALUE_STEP)) if value > 0 else None
    return _digest(
        (
            c.lifecycle.value,
            c.tier.value,
            c.segment.value if c.segment else None,
            bucket,
            round(c.potential, 2) if c.potential is not None else None,
            c.at_risk,
        )
    )


def tier_trigger(
    *,
    event_id: str,
    profile_id: str,
    profile_version: int,
    move: TierMove,
    from_tier: Tier | None,
    to_tier: Tier,
    lifecycle: Lifecycle,
    predicted_value: float,
    occurred_at: datetime,
    correlation_id: str | None,
    accepted_at_ms: int | None,
    trace: TraceFields = (),
) -> Trigger:
    """Return the trigger of a tier move."""
    return Trigger(
        event_id=event_id,
        kind=TriggerKind.of_move(move),
        profile_id=profile_id,
        profile_version=profile_version,
        occurred_at=occurred_at,
        lifecycle=lifecycle,
        to_tier=to_tier,
        from_tier=from_tier,
        predicted_value=predicted_value,
        correlation_id=correlation_id or event_id,
        causation_id=event_id,
        accepted_at_ms=accepted_at_ms,
        trace=trace,
    )


@dataclass(frozen=True, slots=True)
class Cause:
    """The event a derived trigger comes from."""

    event_id: str
    occurred_at: datetime
    correlation_id: str | None = None
    accepted_at_ms: int | None = None
    trace: TraceFields = ()


def _derived(
    kinds: list[TriggerKind], cause: Cause, new: Contact, *, needs_scores: bool
) -> list[Trigger]:
    return [
        Trigger(
            event_id=derived_event_id("campaign.trigger", kind.value, cause.event_id),
            kind=kind,
            profile_id=new.profile_id,
            profile_version=max(new.version, new.scored_version),
            occurred_at=cause.occurred_at,
            lifecycle=new.lifecycle,
            to_tier=new.tier,
            predicted_value=new.predicted_value,
            needs_scores=needs_scores,
            correlation_id=cause.correlation_id or cause.event_id,
            causation_id=cause.event_id,
            accepted_at_ms=cause.accepted_at_ms,
            trace=cause.trace,
        )
        for kind in kinds
    ]


def profile_triggers(cause: Cause, old: Contact | None, new: Contact) -> list[Trigger]:
    """Return the triggers a profile change carries: first purchase, new category bought.

    They wait for the scores of the same profile version, so the tier and value they are
    decided on already reflect the purchase.
    """
    kinds: list[TriggerKind] = []
    before = old.purchase_count if old is not None and old.version > 0 else 0
    # An unknown person seen with exactly one purchase has just made their first.
    if before == 0 and new.purchase_count >= 1 and (old is not None or new.purchase_count == 1):
        kinds.append(TriggerKind.FIRST_PURCHASE)
    old_categories = old.categories if old is not None else frozenset()
    if new.categories - old_categories and new.lifecycle is not Lifecycle.PROSPECT:
        kinds.append(TriggerKind.CROSS_SELL)
    return _derived(kinds, cause, new, needs_scores=True)


def score_triggers(
    cause: Cause, old: Contact | None, new: Contact, high_potential: float
) -> list[Trigger]:
    """Return the triggers new scores carry: newly at risk, newly high-potential prospect."""
    kinds: list[TriggerKind] = []
    was_scored = old is not None and old.scored_version > 0
    if new.at_risk and not (was_scored and old is not None and old.at_risk):
        kinds.append(TriggerKind.AT_RISK)
    previous_potential = (old.potential or 0.0) if was_scored and old is not None else 0.0
    if (
        new.lifecycle is Lifecycle.PROSPECT
        and (new.potential or 0.0) >= high_potential > previous_potential
    ):
        kinds.append(TriggerKind.HIGH_POTENTIAL)
    return _derived(kinds, cause, new, needs_scores=False)


def inactivity_trigger(contact: Contact, days: int, now: datetime) -> Trigger | None:
    """Return the inactivity trigger of a person silent for `days`, one per silent spell."""
    if contact.last_seen_at is None or now - contact.last_seen_at < timedelta(days=days):
        return None
    cause = derived_event_id(
        "campaign.inactivity", str(days), contact.profile_id, contact.last_seen_at.isoformat()
    )
    return Trigger(
        event_id=cause,
        kind=TriggerKind.INACTIVITY,
        profile_id=contact.profile_id,
        profile_version=contact.version,
        occurred_at=now,
        lifecycle=contact.lifecycle,
        to_tier=contact.tier,
        predicted_value=contact.predicted_value,
        inactive_days=days,
        episode_at=contact.last_seen_at,
        correlation_id=cause,
        causation_id=cause,
    )


def ready(trigger: Trigger, contact: Contact | None) -> bool:
    """Return whether the person is known well enough (the versions behind it) to decide."""
    if contact is None or contact.version < trigger.profile_version:
        return False
    return not trigger.needs_scores or contact.scored_version >= trigger.profile_version
