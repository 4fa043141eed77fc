"""Ports of the ingest use cases: what they need from the outside world."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clientela.ingest.domain.touchpoints import RecordedTouchpoint
from clientela.shared.contracts import DeadLetterEvent


class PublishFailedError(Exception):
    """The events were not acknowledged by the event log; none may be considered accepted."""


class DeduplicationUnavailableError(Exception):
    """The dedup store could not be reached, so nothing can safely be accepted."""


class Deduplicator(Protocol):
    """Remembers which event ids were accepted, across every ingest instance.

    Two phases: `claim` marks ids pending, `confirm` marks them accepted once the event log
    acknowledged them. Only confirmed ids are duplicates; a pending id (its request still in
    flight, or its process killed before the acknowledgement) may be published again, which
    the consumers' inboxes absorb. So a crash between claim and publish never loses an event.
    """

    async def claim(self, event_ids: Sequence[str]) -> list[bool]:
        """Claim each id; return False only where it was confirmed before (one round trip)."""
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


class SharedRateLimit(Protocol):
    """Rate limits held outside the process, so every process spends from one budget."""

    async def take(self, key: str, events: int) -> float:
        """Spend `events` of the key's budget; return 0, or the seconds until they exist."""
        ...
