"""The accept-touchpoints use case: validate, deduplicate, publish, report per event."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from clientela.ingest.application.ports import (
    DeduplicationUnavailableError,
    Deduplicator,
    EventPublisher,
    RateCharge,
)
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.touchpoints import (
    Ignored,
    IntakeContext,
    RecordedTouchpoint,
    Rejection,
    SubmittedEvent,
    record_touchpoint,
)
from clientela.shared.contracts import FieldError

log = logging.getLogger(__name__)

# What a format translator hands over per position: an event to validate, or its fate already.
Submission = SubmittedEvent | Rejection | Ignored


class TooManyEventsError(Exception):
    """A submission holds more events than the policy allows."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} events exceed the limit of {limit} per request")
        self.count = count
        self.limit = limit


class Outcome(StrEnum):
    """What became of one submitted event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    IGNORED = "ignored"


@dataclass(slots=True)
class EventOutcome:
    """The fate of the event at a position in the submission (not frozen: built per event)."""

    index: int
    event_id: str | None
    status: Outcome
    errors: tuple[FieldError, ...] = ()
    code: str | None = None


@dataclass(frozen=True, slots=True)
class IntakeReport:
    """Per-event outcomes of one submission, in submission order."""

    outcomes: tuple[EventOutcome, ...]

    def count(self, status: Outcome) -> int:
        """Return how many events ended with that status."""
        return sum(1 for o in self.outcomes if o.status is status)

    @property
    def all_rejected(self) -> bool:
        """Return whether no event was accepted, recognised as a duplicate, or ignored."""
        return all(o.status is Outcome.REJECTED for o in self.outcomes)


async def accept_touchpoints(
    submitted: Sequence[Submission],
    context: IntakeContext,
    policy: IntakePolicy,
    deduplicator: Deduplicator,
    publisher: EventPublisher,
    *,
    enforce_limit: bool = True,
    charge: RateCharge | None = None,
) -> IntakeReport:
    """Accept the valid, unseen events of a submission and report on every event.

    A charge is spent with the claim (one round trip for both); RateLimitedError when its
    events are not there, nothing accepted. Raises TooManyEventsError,
    DeduplicationUnavailableError or PublishFailedError; in the last two cases no event is
    accepted and any claim made is released, so the whole submission can be retried.
    """
    if enforce_limit and len(submitted) > policy.max_events:
        raise TooManyEventsError(len(submitted), policy.max_events)
    parsed = [
        record_touchpoint(item, context, policy) if isinstance(item, SubmittedEvent) else item
        for item in submitted
    ]
    # Claim each id once even when it repeats inside the submission: repeats are duplicates.
    unique_ids = list(
        dict.fromkeys(p.event_id for p in parsed if isinstance(p, RecordedTouchpoint))
    )
    fresh = set()
    if charge is not None:
        claims = await deduplicator.claim(unique_ids, charge)
        fresh = {event_id for event_id, new in zip(unique_ids, claims, strict=True) if new}
    elif unique_ids:
        claims = await deduplicator.claim(unique_ids)
        fresh = {event_id for event_id, new in zip(unique_ids, claims, strict=True) if new}

    outcomes: list[EventOutcome] = []
    to_publish: list[RecordedTouchpoint] = []
    for index, item in enumerate(parsed):
        if isinstance(item, Rejection):
            outcomes.append(
                EventOutcome(index, item.event_id, Outcome.REJECTED, item.errors, item.code)
            )
        elif isinstance(item, Ignored):
            outcomes.append(EventOutcome(index, item.event_id, Outcome.IGNORED, code=item.reason))
        elif item.event_id in fresh:
            fresh.discard(item.event_id)
            to_publish.append(item)
            outcomes.append(EventOutcome(index, item.event_id, Outcome.ACCEPTED))
        else:
            outcomes.append(EventOutcome(index, item.event_id, Outcome.DUPLICATE))

    if to_publish:
        try:
            await publisher.publish(to_publish, context.accepted_at_ms)
        except BaseException:
            # Not acknowledged means not accepted: free the ids so the client's retry goes through.
            await _release(deduplicator, [e.event_id for e in to_publish])
            raise
        try:
            await deduplicator.confirm([e.event_id for e in to_publish])
        except DeduplicationUnavailableError:
            # The events are durable, so they stay accepted; a retry of these still-pending ids
            # is published again and the consumers' inboxes drop the copy.
            log.warning("could not confirm %d dedup claims after publishing", len(to_publish))
    return IntakeReport(tuple(outcomes))


async def _release(deduplicator: Deduplicator, event_ids: list[str]) -> None:
    try:
        await deduplicator.release(event_ids)
    except DeduplicationUnavailableError:
        # The claims expire with their TTL; until then a retry of these ids reads as a duplicate.
        log.error("could not release %d dedup claims after a failed publish", len(event_ids))


@dataclass(frozen=True, slots=True)
class TouchpointIntake:
    """The use case bound to its policy and ports, as wired once per process."""

    policy: IntakePolicy
    deduplicator: Deduplicator
    publisher: EventPublisher

    async def accept(
        self,
        submitted: Sequence[Submission],
        context: IntakeContext,
        *,
        enforce_limit: bool = True,
        charge: RateCharge | None = None,
    ) -> IntakeReport:
        """Accept a submission; see accept_touchpoints."""
        return await accept_touchpoints(
            submitted,
            context,
            self.policy,
            self.deduplicator,
            self.publisher,
            enforce_limit=enforce_limit,
            charge=charge,
        )
