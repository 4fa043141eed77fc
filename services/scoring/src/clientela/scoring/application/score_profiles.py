"""Use case: score a batch of profile changes, store the scores and announce tier moves."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from clientela.scoring.application.population import PopulationCache
from clientela.scoring.application.ports import (
    OutgoingEvent,
    ProfileChangeMessage,
    ScoringUnitOfWork,
    StoredScore,
    TierTransition,
)
from clientela.scoring.domain.tiers import Cutoffs, tier_move
from clientela.scoring.domain.value_model import ValueEstimate, ValueModel
from clientela.shared.contracts import (
    Reason,
    ScoresUpdated,
    ScoresUpdatedEvent,
    Tier,
    TierChanged,
    TierChangedEvent,
    derived_event_id,
    utc_now,
)
from clientela.shared.contracts.topics import SCORES, TIER_CHANGES

log = logging.getLogger(__name__)

SOURCE = "scoring"


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did: profiles scored, tier moves announced, messages ignored."""

    scored: int = 0
    tier_changes: int = 0
    ignored: int = 0

    @property
    def staged(self) -> bool:
        """Return whether events wait in the outbox."""
        return self.scored > 0


def newest_per_profile(messages: Sequence[ProfileChangeMessage]) -> list[ProfileChangeMessage]:
    """Keep only the highest profile version of each profile in a batch."""
    newest: dict[str, ProfileChangeMessage] = {}
    for message in messages:
        data = message.event.data
        kept = newest.get(data.profile_id)
        if kept is None or data.version > kept.event.data.version:
            newest[data.profile_id] = message
    return list(newest.values())


class ScoreProfiles:
    """Scores profile changes in one transaction per batch; redelivery and stale versions no-op."""

    def __init__(
        self,
        value_model: ValueModel,
        population: PopulationCache,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._model = value_model
        self._population = population
        self._clock = clock

    async def __call__(
        self, messages: Sequence[ProfileChangeMessage], uow: ScoringUnitOfWork
    ) -> BatchOutcome:
        """Apply a batch; return what was done. Call relay.wake() when outcome.staged."""
        async with uow:
            fresh_ids = await uow.claim_new([m.event.event_id for m in messages])
            fresh = [m for m in messages if m.event.event_id in fresh_ids]
            candidates = newest_per_profile(fresh)
            stored = await uow.scores.get_many([m.event.data.profile_id for m in candidates])
            todo = [m for m in candidates if _is_newer(m, stored.get(m.event.data.profile_id))]
            if not todo:
                await uow.commit()
                return BatchOutcome(ignored=len(messages))
            now = self._clock()
            estimates = {
                m.event.data.profile_id: self._model.estimate(m.event.data, now) for m in todo
            }
            new_values = {
                pid: None if e.is_prospect else e.predicted_value for pid, e in estimates.items()
            }
            cutoffs = await self._population.cutoffs(uow.scores, new_values)
            scores: list[ScoresUpdated] = []
            transitions: list[TierTransition] = []
            outgoing: list[OutgoingEvent] = []
            for message in todo:
                profile_id = message.event.data.profile_id
                previous = stored.get(profile_id)
                updated = self._scores(message, estimates[profile_id], cutoffs)
                scores.append(updated)
                outgoing.append(_scores_event(message, updated, now))
                changed = _tier_changed(message, updated, previous, now)
                if changed is not None:
                    event, transition = changed
                    outgoing.append(event)
                    transitions.append(transition)
            await uow.scores.save_many(scores, now)
            await uow.record_tier_changes(transitions)
            await uow.stage(outgoing)
            await uow.commit()
        self._population.apply(new_values)
        log.info(
            "scored %d profile(s), %d tier change(s), %d message(s) ignored",
            len(scores),
            len(transitions),
            len(messages) - len(scores),
        )
        return BatchOutcome(
            scored=len(scores),
            tier_changes=len(transitions),
            ignored=len(messages) - len(scores),
        )

    def _scores(
        self, message: ProfileChangeMessage, estimate: ValueEstimate, cutoffs: Cutoffs
    ) -> ScoresUpdated:
        profile = message.event.data
        if estimate.is_prospect:
            tier = Tier.P
            reasons: tuple[Reason, ...] = estimate.reasons
        else:
            tier = cutoffs.tier_for(estimate.predicted_value)
            reasons = estimate.reasons + cutoffs.reasons()
        return ScoresUpdated(
            profile_id=profile.profile_id,
            profile_version=profile.version,
            model_version=self._model.model_version,
            lifecycle=estimate.lifecycle,
            tier=tier,
            predicted_value=estimate.predicted_value,
            cost_to_serve=float(profile.aggregates.cost_to_serve),
            reasons=list(reasons),
        )


def _is_newer(message: ProfileChangeMessage, stored: StoredScore | None) -> bool:
    # Profile versions only grow: an equal or lower one was applied already or is out of order.
    return stored is None or message.event.data.version > stored.profile_version


def _scores_event(
    message: ProfileChangeMessage, scores: ScoresUpdated, now: datetime
) -> OutgoingEvent:
    cause = message.event
    event = ScoresUpdatedEvent(
        event_id=derived_event_id("scores.updated", scores.profile_id, str(scores.profile_version)),
        occurred_at=now,
        source=SOURCE,
        correlation_id=cause.correlation_id or cause.event_id,
        causation_id=cause.event_id,
        data=scores,
    )
    return OutgoingEvent(SCORES, scores.profile_id, event, message.accepted_at_ms)


def _tier_changed(
    message: ProfileChangeMessage,
    scores: ScoresUpdated,
    previous: StoredScore | None,
    now: datetime,
) -> tuple[OutgoingEvent, TierTransition] | None:
    from_tier = previous.tier if previous is not None else None
    move = tier_move(from_tier, scores.tier)
    if move is None:
        return None
    cause = message.event
    event_id = derived_event_id("tier.changed", scores.profile_id, str(scores.profile_version))
    event = TierChangedEvent(
        event_id=event_id,
        occurred_at=now,
        source=SOURCE,
        correlation_id=cause.correlation_id or cause.event_id,
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
    transition = TierTransition(
        event_id=event_id,
        profile_id=scores.profile_id,
        profile_version=scores.profile_version,
        from_tier=from_tier,
        to_tier=scores.tier,
        move=move,
        occurred_at=now,
    )
    return OutgoingEvent(TIER_CHANGES, scores.profile_id, event, message.accepted_at_ms), (
        transition
    )
