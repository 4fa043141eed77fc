"""Outgoing events of a scored profile: ids from per-profile counters, causes carried along."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clientela.scoring.application.ports import ScoreRecord, TierTransition
from clientela.scoring.domain.facts import CustomerFacts
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.tiers import tier_move
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    ScoresUpdated,
    ScoresUpdatedEvent,
    TierChanged,
    TierChangedEvent,
    derived_event_id,
)
from clientela.shared.contracts.topics import SCORES, TIER_CHANGES

SOURCE = "scoring"


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a profile is re-scored: a ProfileChanged event, or a sweep of the population."""

    event_id: str
    correlation_id: str
    accepted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """The record to store and the events (and history row) that announce it."""

    record: ScoreRecord
    events: list[OutgoingEvent]
    transition: TierTransition | None


def publish(
    scores: ScoresUpdated,
    previous: ScoreRecord | None,
    cause: Cause,
    now: datetime,
    *,
    facts: CustomerFacts | None,
    prospect_features: ProspectFeatures | None,
) -> Publication:
    """Return the new record, a ScoresUpdated and, when the tier moved, one TierChanged.

    Each ScoresUpdated takes the next revision and each tier move the next tier sequence
    number of the profile; the event ids come from those, so a move is announced once and a
    transaction retried after a crash rebuilds exactly the same ids.
    """
    revision = (previous.revision if previous is not None else 0) + 1
    from_tier = previous.tier if previous is not None else None
    move = tier_move(from_tier, scores.tier)
    tier_seq = (previous.tier_seq if previous is not None else 0) + (1 if move else 0)
    stored = ScoreRecord(
        scores=scores,
        revision=revision,
        tier_seq=tier_seq,
        facts=facts,
        prospect_features=prospect_features,
        updated_at=now,
    )
    updated = ScoresUpdatedEvent(
        event_id=derived_event_id("scores.updated", scores.profile_id, f"r{revision}"),
        occurred_at=now,
        source=SOURCE,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
        data=scores,
    )
    events = [OutgoingEvent(SCORES, scores.profile_id, updated, cause.accepted_at_ms)]
    if move is None:
        return Publication(stored, events, None)
    event_id = derived_event_id("tier.changed", scores.profile_id, f"t{tier_seq}")
    changed = TierChangedEvent(
        event_id=event_id,
        occurred_at=now,
        source=SOURCE,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
        data=TierChanged(
            profile_id=scores.profile_id,
            profile_version=scores.profile_version,
            from_tier=from_tier,
            to_tier=scores.tier,
            move=move,
            lifecycle=scores.lifecycle,
            predicted_value=scores.predicted_value,
            model_version=scores.model_version,
            reasons=scores.reasons,
        ),
    )
    events.append(OutgoingEvent(TIER_CHANGES, scores.profile_id, changed, cause.accepted_at_ms))
    transition = TierTransition(
        event_id=event_id,
        profile_id=scores.profile_id,
        profile_version=scores.profile_version,
        from_tier=from_tier,
        to_tier=scores.tier,
        move=move,
        occurred_at=now,
    )
    return Publication(stored, events, transition)
