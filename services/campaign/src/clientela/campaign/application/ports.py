"""Ports the campaign use cases depend on; adapters and test fakes implement them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from clientela.campaign.domain.model import Contact, Decision, Outcome
from clientela.shared.contracts import (
    CampaignMessageEvent,
    Channel,
    MessagePurpose,
    Reason,
    Tier,
    TierChangedEvent,
)


@dataclass(frozen=True, slots=True)
class ReceivedTrigger:
    """A tier change as received, with the accept time of the chain that caused it."""

    event: TierChangedEvent
    accepted_at_ms: int | None = None

    @property
    def event_id(self) -> str:
        """Return the id of the tier change event."""
        return self.event.event_id

    @property
    def profile_id(self) -> str:
        """Return the profile that moved."""
        return self.event.data.profile_id

    @property
    def required_profile_version(self) -> int:
        """Return the profile version a decision must be based on (at least)."""
        return self.event.data.profile_version


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A campaign message to publish, with the accept time to propagate."""

    event: CampaignMessageEvent
    accepted_at_ms: int | None


class ContactRepository(Protocol):
    """The latest known contact facts per profile."""

    async def save_newer(self, contacts: Sequence[Contact], now: datetime) -> None:
        """Store each contact unless a newer or equal version is already stored."""
        ...

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        """Return the stored contacts of these profiles."""
        ...


class TriggerRepository(Protocol):
    """Tier changes waiting for (or already given) a decision."""

    async def add(self, triggers: Sequence[ReceivedTrigger], now: datetime) -> None:
        """Store new triggers as pending; a known trigger is left as it is."""
        ...

    async def pending_for(self, profile_ids: Collection[str]) -> list[ReceivedTrigger]:
        """Return the pending triggers of these profiles, oldest first."""
        ...

    async def mark_decided(self, trigger_event_ids: Collection[str], now: datetime) -> None:
        """Mark triggers as decided."""
        ...


class DecisionRepository(Protocol):
    """Every decision taken, one per campaign and trigger."""

    async def add(self, decisions: Sequence[Decision]) -> set[str]:
        """Record decisions; return the ids recorded now (an existing one is not replaced)."""
        ...


class UnitOfWork(Protocol):
    """One transaction over contacts, triggers, decisions, the inbox and the outbox."""

    @property
    def contacts(self) -> ContactRepository:
        """Return the contacts of this transaction."""
        ...

    @property
    def triggers(self) -> TriggerRepository:
        """Return the triggers of this transaction."""
        ...

    @property
    def decisions(self) -> DecisionRepository:
        """Return the decisions of this transaction."""
        ...

    async def __aenter__(self) -> UnitOfWork:
        """Begin the transaction."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back unless committed, and release the connection."""
        ...

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Record incoming event ids as processed; return those never seen before."""
        ...

    async def stage(self, messages: Sequence[OutgoingMessage]) -> None:
        """Queue messages for publication once the transaction commits."""
        ...

    async def commit(self) -> None:
        """Commit everything done in this unit of work."""
        ...


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A stored decision, as the read side shows it."""

    decision_id: str
    campaign_id: str
    trigger_event_id: str
    profile_id: str
    outcome: Outcome
    channel: Channel | None
    variant: str
    purpose: MessagePurpose
    tier: Tier
    reasons: list[Reason]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many decisions of a campaign had this outcome on this channel."""

    outcome: Outcome
    channel: Channel | None
    count: int


class CampaignReadModel(Protocol):
    """Queries over stored decisions."""

    async def outcome_counts(self, campaign_id: str) -> list[OutcomeCount]:
        """Return decision counts of a campaign grouped by outcome and channel."""
        ...

    async def decisions_for_profile(self, profile_id: str, limit: int) -> list[DecisionRecord]:
        """Return a profile's decisions, newest first."""
        ...

    async def ready(self) -> bool:
        """Return whether the store answers."""
        ...
