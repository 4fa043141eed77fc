"""Ports of the scoring use cases: what they need from storage and the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from clientela.scoring.domain.facts import CustomerFacts
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.profile_view import ProfileChangeView
from clientela.scoring.domain.value_model import FittedParameters
from clientela.shared.codec import EncodedEvent
from clientela.shared.contracts import (
    Lifecycle,
    ScoresUpdated,
    Tier,
    TierMove,
    TopicSpec,
)


@dataclass(frozen=True, slots=True)
class ProfileChangeMessage:
    """A ProfileChanged event as delivered, with the accept time carried along the chain."""

    event: ProfileChangeView
    accepted_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ErasureMessage:
    """A ProfileErased event as delivered: drop everything held about the profile."""

    event_id: str
    profile_id: str


@dataclass(frozen=True, slots=True)
class LoadedBatch:
    """What a streamed batch reads in one round trip before scoring.

    `stored` are the records of the batch's profiles that have one (counters and facts, no
    state), `erased` the batch's profile ids that were erased and must not come back.
    """

    stored: dict[str, ScoreRecord]
    erased: set[str]


@dataclass(frozen=True, slots=True)
class StoredScore:
    """The scores last published for a profile, as the read side shows them."""

    scores: ScoresUpdated
    updated_at: datetime

    @property
    def profile_version(self) -> int:
        """Return the profile version the stored scores reflect."""
        return self.scores.profile_version

    @property
    def tier(self) -> Tier:
        """Return the stored tier."""
        return self.scores.tier


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """Everything stored for a scored profile: scores, model inputs and event counters.

    `revision` counts the ScoresUpdated events and `tier_seq` the TierChanged events of the
    profile; derived event ids are built from them, so each publication has its own id and a
    retried transaction rebuilds the same ones. `state` is the ScoresUpdated JSON exactly as
    published; it is parsed only where the full scores are read (`scores`), and left empty
    when a store was asked for the counters only. `inputs_digest` fingerprints what the
    scores were computed from (facts, lifecycle, segment, prospect features): a change of
    the profile that leaves it equal is not scored again. `cost_to_serve` is the profile's
    latest known cost to serve (a customer's is in its facts as well); `republish` says it
    (or a prospect's features) moved past the published scores, for the next sweep to
    announce. `potential` is the potential the scores published (prospects), against which
    a prospect's new potential is held before it is published again.
    """

    profile_id: str
    profile_version: int
    revision: int
    tier_seq: int
    lifecycle: Lifecycle
    tier: Tier
    predicted_value: float
    at_risk: bool
    facts: CustomerFacts | None
    prospect_features: ProspectFeatures | None
    updated_at: datetime
    state: bytes = b""
    inputs_digest: int | None = None
    cost_to_serve: float = 0.0
    republish: bool = False
    potential: float | None = None

    @property
    def scores(self) -> ScoresUpdated:
        """Return the published scores (parsed from `state`)."""
        if not self.state:
            raise LookupError("the scores were not loaded with this record")
        return ScoresUpdated.model_validate_json(self.state)


@dataclass(frozen=True, slots=True)
class UnpublishedChange:
    """A newer profile version whose news no consumer needs before the next sweep.

    It moves nothing the value, tier or segment read, or it moves only a prospect's potential
    by no more than the tolerance. What it does move (the cost to serve; a prospect's
    features) is stored without publishing: the version guard moves on, and the next sweep
    announces it, so its staleness is bounded by the sweep interval. `prospect_features` is
    None for a customer, whose stored pre-purchase snapshot stays as it is; `inputs_digest`
    is the prospect's new fingerprint when its features left their buckets (None: kept).
    """

    profile_id: str
    profile_version: int
    cost_to_serve: float
    prospect_features: ProspectFeatures | None = None
    inputs_digest: int | None = None

    def applied_to(self, record: ScoreRecord) -> ScoreRecord | None:
        """Return the record with this change stored, or None when it is not older.

        What a store does with the change (the SQL store in one UPDATE per batch): version,
        cost (in the facts too), a prospect's features and fingerprint, and the mark for the
        sweep.
        """
        if record.profile_version >= self.profile_version:
            return None
        facts = record.facts
        return replace(
            record,
            profile_version=self.profile_version,
            cost_to_serve=self.cost_to_serve,
            facts=replace(facts, cost_to_serve=self.cost_to_serve) if facts else None,
            prospect_features=self.prospect_features or record.prospect_features,
            inputs_digest=record.inputs_digest
            if self.inputs_digest is None
            else self.inputs_digest,
            republish=True,
        )


@dataclass(frozen=True, slots=True)
class TierTransition:
    """One row of the tier history."""

    event_id: str
    profile_id: str
    profile_version: int
    from_tier: Tier | None
    to_tier: Tier
    move: TierMove
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class TierTotal:
    """How many profiles a tier holds and their summed predicted value (as stored)."""

    tier: Tier
    count: int
    value: float


class ScoreStore(Protocol):
    """Scores inside a unit of work."""

    async def get_many(
        self, profile_ids: Sequence[str], *, with_state: bool = False
    ) -> dict[str, ScoreRecord]:
        """Return the stored records of those profiles that have any, in one query.

        The published state is read only `with_state`; streaming needs just the counters.
        """
        ...

    async def save_many(self, records: Sequence[ScoreRecord]) -> None:
        """Insert or replace records; a lower revision never overwrites a higher one."""
        ...

    async def all_records(self) -> list[ScoreRecord]:
        """Return every stored record (at start, to rebuild the in-memory population)."""
        ...


class ParameterStore(Protocol):
    """Fitted model parameters, versioned."""

    async def latest(self) -> FittedParameters | None:
        """Return the newest parameter set, or None before the first fit."""
        ...

    async def history(self, limit: int) -> list[FittedParameters]:
        """Return the newest parameter sets, newest first."""
        ...

    async def add(self, parameters: FittedParameters) -> None:
        """Store a new parameter set (its version must be new)."""
        ...


class ScoringUnitOfWork(Protocol):
    """One transaction: scores, tier history, staged events and erasures' inbox claims."""

    @property
    def scores(self) -> ScoreStore:
        """Return the scores of this unit of work."""
        ...

    @property
    def parameters(self) -> ParameterStore:
        """Return the model parameters of this unit of work."""
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
        """Roll back whatever was not committed."""
        ...

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        """Mark event ids processed; return those seen for the first time."""
        ...

    async def load_batch(self, profile_ids: Sequence[str]) -> LoadedBatch:
        """Read the profiles' stored records and which of them were erased."""
        ...

    async def write_scored(
        self,
        records: Sequence[ScoreRecord],
        transitions: Sequence[TierTransition],
        events: Sequence[EncodedEvent],
        unpublished: Sequence[UnpublishedChange] = (),
    ) -> None:
        """Store records (a lower revision never overwrites), history rows and staged events.

        `unpublished` are stored as `store_unpublished` stores them, in the same write; their
        profiles are not among the records'.
        """
        ...

    async def store_unpublished(self, changes: Sequence[UnpublishedChange]) -> None:
        """Store newer versions' unpublished inputs, marked to republish; older ones no-op."""
        ...

    async def stale_ids(self) -> list[str]:
        """Return the ids of the profiles marked to republish, in id order."""
        ...

    async def erase(self, profile_ids: Sequence[str]) -> None:
        """Delete all held about the profiles; keep only a keyed, non-reversible marker of each."""
        ...

    async def stage_tombstones(self, topic: TopicSpec, keys: Sequence[str]) -> None:
        """Stage null-valued records under the keys (deletions on a compacted topic)."""
        ...

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        """Append tier moves to the history."""
        ...

    async def stage_encoded(self, events: Sequence[EncodedEvent]) -> None:
        """Put encoded events in the outbox, to be published once the transaction commits."""
        ...

    async def commit(self) -> None:
        """Commit everything done in this unit of work."""
        ...


class ScoreReader(Protocol):
    """Read side of the scores, for the HTTP API."""

    async def get(self, profile_id: str) -> StoredScore | None:
        """Return the stored scores of one profile, or None."""
        ...

    async def tier_totals(self) -> list[TierTotal]:
        """Return count and summed predicted value per stored tier."""
        ...
