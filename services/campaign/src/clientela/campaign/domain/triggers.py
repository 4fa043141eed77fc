"""What campaigns know of a person, and the triggers found in how that knowledge changes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from clientela.campaign.domain.model import Contact, TraceFields, Trigger, TriggerKind
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Lifecycle,
    ProfileChanged,
    ScoresUpdated,
    TierChanged,
    derived_event_id,
)

CATEGORIES_TRAIT = "categories"


def _categories(profile: ProfileChanged) -> frozenset[str]:
    # Categories bought come from the aggregates when the profile publishes them; an
    # upstream system may also state them as a comma-separated trait.
    counts: object = getattr(profile.aggregates, "purchase_categories", None)
    if isinstance(counts, Mapping) and counts:
        return frozenset(str(k) for k, v in counts.items() if v)
    trait = profile.traits.get(CATEGORIES_TRAIT)
    if isinstance(trait, str):
        return frozenset(part.strip() for part in trait.split(",") if part.strip())
    return frozenset()


def _habits(profile: ProfileChanged) -> dict[Channel, float]:
    """Return the share of the person's own contacts per channel (inbound when published)."""
    shares: object = getattr(profile.aggregates, "inbound_channel_preference", None)
    raw: Mapping[str, float]
    if isinstance(shares, Mapping) and shares:
        raw = {str(k): float(v) for k, v in shares.items()}
    else:
        raw = {k: float(v) for k, v in profile.aggregates.counts_by_channel.items()}
    total = sum(v for v in raw.values() if v > 0)
    habits: dict[Channel, float] = {}
    if total <= 0:
        return habits
    for name, value in raw.items():
        try:
            habits[Channel(name)] = max(value, 0.0) / total
        except ValueError:
            continue  # a channel this service cannot send on tells nothing about outbound
    return habits


def contact_from_profile(profile: ProfileChanged, previous: Contact | None) -> Contact:
    """Fold a profile change into what is known (scores and complaints are kept)."""
    opted_out = [
        state.updated_at
        for state in profile.consent.values()
        if state.status is ConsentStatus.OPTED_OUT
    ]
    facts = Contact(
        profile_id=profile.profile_id,
        version=profile.version,
        lifecycle=profile.lifecycle,
        reachable_channels=frozenset(profile.reachable_channels),
        consent={channel: state.status for channel, state in profile.consent.items()},
        opted_out_at=max(opted_out) if opted_out else None,
        traits=dict(profile.traits),
        habits=_habits(profile),
        purchase_count=profile.aggregates.purchase_count,
        total_spend=profile.aggregates.total_spend,
        last_seen_at=profile.aggregates.last_seen_at,
        last_purchase_at=profile.aggregates.last_purchase_at,
        categories=_categories(profile),
    )
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


def contact_with_scores(scores: ScoresUpdated, previous: Contact | None) -> Contact:
    """Fold scores into what is known; a person only scored so far gets a minimal contact."""
    base = previous or Contact(profile_id=scores.profile_id, version=0, lifecycle=scores.lifecycle)
    return replace(
        base,
        scored_version=scores.profile_version,
        tier=scores.tier,
        segment=scores.segment,
        predicted_value=scores.predicted_value,
        potential=scores.potential,
        at_risk=scores.at_risk,
    )


def tier_trigger(
    event_id: str,
    change: TierChanged,
    occurred_at: datetime,
    correlation_id: str | None,
    accepted_at_ms: int | None,
    trace: TraceFields = (),
) -> Trigger:
    """Return the trigger of a tier move."""
    return Trigger(
        event_id=event_id,
        kind=TriggerKind.of_move(change.move),
        profile_id=change.profile_id,
        profile_version=change.profile_version,
        occurred_at=occurred_at,
        lifecycle=change.lifecycle,
        to_tier=change.to_tier,
        from_tier=change.from_tier,
        predicted_value=change.predicted_value,
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
