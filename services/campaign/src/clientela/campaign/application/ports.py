"""Ports the campaign use cases depend on; adapters and test fakes implement them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Protocol, Self

from clientela.campaign.domain.contact_policy import CapCounter
from clientela.campaign.domain.economics import PosteriorKey, ResponseCounts
from clientela.campaign.domain.model import (
    CampaignDefinition,
    Contact,
    Decision,
    Merge,
    Outcome,
    ScoreFacts,
    Trigger,
)
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    Channel,
    MessagePurpose,
    Reason,
    Segment,
    Tier,
)


@dataclass(frozen=True, slots=True)
class ProfileAdvance:
    """A newer profile version whose facts are unchanged, with what changes every time."""

    version: int
    last_seen_at: datetime | None
    habits: Mapping[Channel, float]


@dataclass(frozen=True, slots=True)
class ViewChanges:
    """What one batch changes in the contact view; written together, each part by its guard.

    `profiles` replace profile facts unless a newer or equal profile version is stored;
    `scores` replace score facts unless scores of a newer profile version are stored;
    `advanced` and `scored_versions` raise versions (and last-seen, habits) of contacts whose
    other facts are unchanged.
    """

    profiles: Sequence[Contact] = ()
    profile_fingerprints: Mapping[str, str] = field(default_factory=dict)
    scores: Sequence[ScoreFacts] = ()
    score_fingerprints: Mapping[str, str] = field(default_factory=dict)
    advanced: Mapping[str, ProfileAdvance] = field(default_factory=dict)
    scored_versions: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContactStamp:
    """The versions and fingerprints of a stored contact: enough to tell what is new."""

    version: int
    scored_version: int
    profile_fingerprint: str | None
    scores_fingerprint: str | None


@dataclass(frozen=True, slots=True)
class DecisionRef:
    """What response and conversion tracking need of a stored decision."""

    decision_id: str
    campaign_id: str
    profile_id: str
    outcome: Outcome
    channel: Channel | None
    tier: Tier
    segment: Segment | None
    decided_at: datetime
    responded: bool
    converted: bool


@dataclass(frozen=True, slots=True)
class Conversion:
    """A decision whose person bought within the attribution window."""

    decision_id: str
    at: datetime
    revenue: Decimal


class ContactRepository(Protocol):
    """What is known of each person; profile facts, scores and complaints change separately."""

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        """Return the stored contacts of these profiles."""
        ...

    async def stamps(self, profile_ids: Collection[str]) -> dict[str, ContactStamp]:
        """Return the versions and fingerprints of the stored contacts of these profiles."""
        ...

    async def save(self, changes: ViewChanges, now: datetime) -> None:
        """Write a batch's changes to the view (see ViewChanges for each part's guard)."""
        ...

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Forget these people entirely."""
        ...

    async def merge(self, merges: Sequence[Merge], now: datetime) -> None:
        """Carry absorbed people's complaints to their survivors, in order; forget the absorbed."""
        ...

    async def save_complaints(self, complaints: Mapping[str, datetime], now: datetime) -> None:
        """Record when people complained or unsubscribed (the latest time wins)."""
        ...

    async def inactive(self, seen_before: datetime, days: int, limit: int) -> list[Contact]:
        """Return people last seen before the time with no inactivity trigger for that spell."""
        ...


class TriggerRepository(Protocol):
    """Triggers waiting for (or already given) a decision."""

    async def add(
        self,
        triggers: Sequence[Trigger],
        now: datetime,
        decided: Collection[str] = (),
        deferred: Mapping[str, datetime] | None = None,
    ) -> None:
        """Store new triggers (pending, decided or deferred); a known trigger is left alone."""
        ...

    async def pending_for(self, profile_ids: Collection[str]) -> list[Trigger]:
        """Return the pending triggers of these profiles, oldest first."""
        ...

    async def waiting_and_known(
        self, profile_ids: Collection[str], trigger_ids: Collection[str]
    ) -> tuple[list[Trigger], set[str]]:
        """Return pending_for(profile_ids) and which of these trigger ids are stored, at once.

        A trigger is stored whatever its status (pending, deferred, decided, expired).
        """
        ...

    async def due(self, now: datetime, limit: int) -> list[Trigger]:
        """Return deferred triggers whose time has come, oldest first."""
        ...

    async def mark_decided(self, trigger_event_ids: Collection[str], now: datetime) -> None:
        """Mark triggers as decided."""
        ...

    async def defer(self, until: Mapping[str, datetime]) -> None:
        """Keep triggers pending until the given times."""
        ...

    async def expire(self, created_before: datetime, now: datetime) -> int:
        """Drop triggers still waiting for data since before that time; return how many."""
        ...

    async def delete(self, profile_ids: Collection[str]) -> None:
        """Delete every trigger of these people."""
        ...

    async def move(self, holders: Mapping[str, str]) -> None:
        """Give each absorbed person's triggers to who holds their data now (merge_targets)."""
        ...


class DecisionRepository(Protocol):
    """Every decision taken, one per campaign and trigger, with responses and conversions."""

    async def add(self, decisions: Sequence[Decision]) -> set[str]:
        """Record decisions; return the ids recorded now (an existing one is not replaced)."""
        ...

    async def decided(self, trigger_event_ids: Collection[str]) -> set[tuple[str, str]]:
        """Return (campaign id, trigger id) of the decisions already taken for these triggers."""
        ...

    async def refs(self, decision_ids: Collection[str]) -> dict[str, DecisionRef]:
        """Return the decisions with these ids."""
        ...

    async def open_for_conversion(
        self, profile_ids: Collection[str], since: datetime
    ) -> list[DecisionRef]:
        """Return sent and control decisions taken since then and not converted yet."""
        ...

    async def answered_and_open(
        self, decision_ids: Collection[str], profile_ids: Collection[str], since: datetime
    ) -> tuple[dict[str, DecisionRef], list[DecisionRef]]:
        """Return refs() of these ids and open_for_conversion() of these people, read at once."""
        ...

    async def record_responses(self, decision_ids: Collection[str], at: datetime) -> set[str]:
        """Mark sent decisions as responded; return those marked now."""
        ...

    async def record_conversions(self, conversions: Sequence[Conversion]) -> None:
        """Mark decisions as converted with the revenue of the purchase."""
        ...

    async def anonymise(self, profile_ids: Collection[str]) -> None:
        """Detach these people's decisions from them, keeping what the results count."""
        ...

    async def move(self, holders: Mapping[str, str]) -> None:
        """Give each absorbed person's decisions (contact history) to who holds their data now."""
        ...


class ErasureRepository(Protocol):
    """Markers of erased profiles (keyed hashes, never the ids)."""

    async def record(self, markers: Collection[str], now: datetime) -> None:
        """Remember these markers."""
        ...

    async def erased(self, markers: Collection[str]) -> set[str]:
        """Return the markers among these that were recorded."""
        ...


class EvidenceRepository(Protocol):
    """Sends and responses per learning cell: the Beta posteriors, persisted."""

    async def counts(self, campaign_ids: Collection[str]) -> dict[PosteriorKey, ResponseCounts]:
        """Return the evidence of these campaigns."""
        ...

    async def add(
        self, sends: Mapping[PosteriorKey, int], responses: Mapping[PosteriorKey, int]
    ) -> None:
        """Add sends and responses to their cells."""
        ...


class BudgetRepository(Protocol):
    """Money spent per campaign on messages sent."""

    async def spent(self, campaign_ids: Collection[str]) -> dict[str, Decimal]:
        """Return what these campaigns spent (and hold them until commit, across instances)."""
        ...

    async def add(self, spend: Mapping[str, Decimal]) -> None:
        """Add spending."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the service's state, the inbox and the outbox."""

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

    @property
    def evidence(self) -> EvidenceRepository:
        """Return the learning evidence of this transaction."""
        ...

    @property
    def budgets(self) -> BudgetRepository:
        """Return the campaign budgets of this transaction."""
        ...

    @property
    def erasures(self) -> ErasureRepository:
        """Return the erasure markers of this transaction."""
        ...

    async def __aenter__(self) -> Self:
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

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        """Queue events for publication once the transaction commits."""
        ...

    async def unstage(self, keys: Collection[str]) -> None:
        """Drop events with these keys that wait for publication (an erased person's)."""
        ...

    async def commit(self) -> None:
        """Commit everything done in this unit of work."""
        ...


@dataclass(frozen=True, slots=True)
class ContactRequest:
    """A message asking for contact capacity: its id and, per ranked channel, the counters."""

    decision_id: str
    alternatives: Sequence[Sequence[CapCounter]]


@dataclass(frozen=True, slots=True)
class ContactGrant:
    """The ledger's answer: the alternative granted (or None) and what blocked the others."""

    granted: int | None
    blocked: tuple[str, ...] = ()


class ContactLedger(Protocol):
    """Contact caps, counted atomically across every instance of the service."""

    async def reserve(self, requests: Sequence[ContactRequest]) -> list[ContactGrant]:
        """Grant each request its first alternative under every cap, or nothing; idempotent."""
        ...

    async def forget(self, profile_ids: Sequence[str], now: datetime) -> None:
        """Delete every counter of these people."""
        ...

    async def move(self, merges: Sequence[Merge], now: datetime) -> None:
        """Add each absorbed person's counters to the survivor's, merge by merge; idempotent."""
        ...

    async def ping(self) -> bool:
        """Return whether the ledger answers."""
        ...


class CampaignStore(Protocol):
    """Campaign definitions kept in the database: those from the file and those from the API."""

    async def all(self) -> list[tuple[CampaignDefinition, str]]:
        """Return every stored campaign with its origin ("file" or "api"), oldest first."""
        ...

    async def sync_file(self, campaigns: Sequence[CampaignDefinition]) -> None:
        """Make the stored file campaigns exactly these (API campaigns are left alone)."""
        ...

    async def origin(self, campaign_id: str) -> str | None:
        """Return where a stored campaign came from, or None when unknown."""
        ...

    async def create(self, campaign: CampaignDefinition) -> bool:
        """Store a new API campaign; False when the id is taken."""
        ...

    async def replace(self, campaign: CampaignDefinition) -> None:
        """Replace an API campaign."""
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
    offer: str | None = None
    responded_at: datetime | None = None
    converted_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many decisions of a campaign had this outcome on this channel."""

    outcome: Outcome
    channel: Channel | None
    count: int


@dataclass(frozen=True, slots=True)
class ResultCell:
    """Totals of a campaign's decisions with one outcome, channel and tier."""

    campaign_id: str
    outcome: Outcome
    channel: Channel | None
    tier: Tier
    count: int
    converted: int
    responded: int
    revenue: float
    cost: float


class CampaignReadModel(Protocol):
    """Queries over stored decisions."""

    async def outcome_counts(self, campaign_id: str) -> list[OutcomeCount]:
        """Return decision counts of a campaign grouped by outcome and channel."""
        ...

    async def result_cells(self, campaign_id: str | None) -> list[ResultCell]:
        """Return result totals by campaign, outcome, channel and tier."""
        ...

    async def evidence(self, campaign_id: str) -> dict[PosteriorKey, ResponseCounts]:
        """Return the learning evidence of a campaign."""
        ...

    async def decisions_for_profile(self, profile_id: str, limit: int) -> list[DecisionRecord]:
        """Return a profile's decisions, newest first."""
        ...

    async def ready(self) -> bool:
        """Return whether the store answers."""
        ...
