"""Ports of the ingest use cases: what they need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from clientela.ingest.domain.rate_limit import RateLimiter
from clientela.ingest.domain.touchpoints import RecordedTouchpoint
from clientela.shared.contracts import DeadLetterEvent


class PublishFailedError(Exception):
    """The events were not acknowledged by the event log; none may be considered accepted."""


class DeduplicationUnavailableError(Exception):
    """The dedup store could not be reached, so nothing can safely be accepted."""


class RateLimitedError(Exception):
    """The key has submitted more events than its rate allows."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"rate limit exceeded; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class SharedRateLimit(Protocol):
    """Rate limits held outside the process, so every process spends from one budget."""

    async def take(self, key: str, events: int) -> float:
        """Spend `events` of the key's budget; return 0, or the seconds until they exist."""
        ...


@dataclass(frozen=True, slots=True)
class RateCharge:
    """A request's events, to be spent from its key's shared rate limit before any claim."""

    limiter: SharedRateLimit
    key: str
    events: int

    async def spend(self) -> None:
        """Spend the events with a call of their own; raise RateLimitedError if not there yet."""
        wait = await self.limiter.take(self.key, self.events)
        if wait > 0:
            raise RateLimitedError(RateLimiter.retry_after(wait))


class Deduplicator(Protocol):
    """Remembers which event ids were accepted, across every ingest instance.

    Two phases: `claim` marks ids pending, `confirm` marks them accepted once the event log
    acknowledged them. Only confirmed ids are duplicates; a pending id (its request still in
    flight, or its process killed before the acknowledgement) may be published again, which
    the consumers' inboxes absorb. So a crash between claim and publish never loses an event.
    """

    async def claim(self, event_ids: Sequence[str], charge: RateCharge | None = None) -> list[bool]:
        """Claim each id; return False only where it was confirmed before (one round trip).

        With a charge, its events are spent first (in the same round trip where the store
        holds the rate limits too); RateLimitedError, and nothing claimed, when they are not there.
        """
        ...

    async def confirm(self, event_ids: Sequence[str]) -> None:
        """Mark claimed ids as accepted: from now on a repeat is a duplicate."""
        ...

    async def release(self, event_ids: Sequence[str]) -> None:
        """Forget ids whose acceptance failed, so that a retry is not taken for a duplicate."""
        ...


class EventPublisher(Protocol):
    """Appends accepted touchpoints to the event log."""

    async def publish(self, events: Sequence[RecordedTouchpoint], accepted_at_ms: int) -> None:
        """Publish the events and return once they are durable; raise PublishFailedError if not."""
        ...


class DeadLetterPublisher(Protocol):
    """Sets aside raw records that could not be accepted, with the reason."""

    async def publish(self, dead_letters: Sequence[DeadLetterEvent]) -> None:
        """Publish the dead letters and return once durable; raise PublishFailedError if not."""
        ...
