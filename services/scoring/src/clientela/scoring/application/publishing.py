"""Outgoing events of a scored profile: ids from per-profile counters, causes carried along."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clientela.scoring.application.ports import ScoreRecord, TierTransition
from clientela.scoring.application.wire import derived_id, encode, envelope
from clientela.scoring.domain.facts import CustomerFacts
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.reasons import ReasonData
from clientela.scoring.domain.tiers import tier_move
from clientela.shared.codec import EncodedEvent
from clientela.shared.contracts import (
    Lifecycle,
    ScoresUpdatedEvent,
    Tier,
    TierChangedEvent,
)
from clientela.shared.contracts.topics import SCORES, TIER_CHANGES

# Enum members by value: a dict lookup costs a fraction of calling the enum, once per profile.
_TIERS = {t.value: t for t in Tier}
_LIFECYCLES = {lc.value: lc for lc in Lifecycle}

# Payload of a ScoresUpdated as plain data (the contract's field names).
ScoresData = dict[str, Any]


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
    events: list[EncodedEvent]
    transition: TierTransition | None


def publish(
    data: ScoresData,
    previous: ScoreRecord | None,
    cause: Cause,
    now: datetime,
    *,
    facts: CustomerFacts | None,
    prospect_features: ProspectFeatures | None,
    tier_reasons: Callable[[], Sequence[ReasonData]],
    inputs_digest: int | None = None,
) -> Publication:
    """Return the new record, a ScoresUpdated and, when the tier moved, one TierChanged.

    Each ScoresUpdated takes the next revision and each tier move the next tier sequence
    number of the profile; the event ids come from those, so a move is announced once and a
    transaction retried after a crash rebuilds exactly the same ids. `tier_reasons` gives the
    TierChanged its reasons (all of them, with the numbers the ScoresUpdated carries as
    fields); it is called only when the tier moved.
    """
    profile_id: str = data["profile_id"]
    tier = _TIERS[data["tier"]]
    revision = (previous.revision if previous is not None else 0) + 1
    from_tier = previous.tier if previous is not None else None
    move = tier_move(from_tier, tier)
    tier_seq = (previous.tier_seq if previous is not None else 0) + (1 if move else 0)
    state = encode(data)
    stored = ScoreRecord(
        profile_id=profile_id,
        profile_version=data["profile_version"],
        revision=revision,
        tier_seq=tier_seq,
        lifecycle=_LIFECYCLES[data["lifecycle"]],
        tier=tier,
        predicted_value=data["predicted_value"],
        at_risk=data["at_risk"],
        facts=facts,
        prospect_features=prospect_features,
        updated_at=now,
        state=state,
        inputs_digest=inputs_digest,
        cost_to_serve=data["cost_to_serve"],
        potential=data["potential"],
    )
    event_id = derived_id("scores.updated", profile_id, f"r{revision}")
    events = [
        EncodedEvent(
            SCORES,
            profile_id,
            ScoresUpdatedEvent,
            event_id,
            envelope(
                ScoresUpdatedEvent,
                event_id,
                now,
                correlation_id=cause.correlation_id,
                causation_id=cause.event_id,
                data=state,
            ),
            cause.accepted_at_ms,
            cause.event_id,
        )
    ]
    if move is None:
        return Publication(stored, events, None)
    event_id = derived_id("tier.changed", profile_id, f"t{tier_seq}")
    changed = encode(
        {
            "profile_id": profile_id,
            "profile_version": data["profile_version"],
            "from_tier": from_tier,
            "to_tier": tier,
            "move": move,
            "lifecycle": data["lifecycle"],
            "predicted_value": data["predicted_value"],
            "model_version": data["model_version"],
            "reasons": tier_reasons(),
        }
    )
    events.append(
        EncodedEvent(
            TIER_CHANGES,
            profile_id,
            TierChangedEvent,
            event_id,
            envelope(
                TierChangedEvent,
                event_id,
                now,
                correlation_id=cause.correlation_id,
                causation_id=cause.event_id,
                data=changed,
            ),
            cause.accepted_at_ms,
            cause.event_id,
        )
    )
    transition = TierTransition(
        event_id=event_id,
        profile_id=profile_id,
        profile_version=data["profile_version"],
        from_tier=from_tier,
        to_tier=tier,
        move=move,
        occurred_at=now,
    )
    return Publication(stored, events, transition)
