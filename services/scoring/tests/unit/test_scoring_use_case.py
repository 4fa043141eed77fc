"""The ScoreProfiles use case against an in-memory unit of work."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

import pytest

from clientela.scoring.application.population import PopulationCache
from clientela.scoring.application.ports import (
    OutgoingEvent,
    ProfileChangeMessage,
    StoredScore,
    TierTransition,
)
from clientela.scoring.application.score_profiles import ScoreProfiles
from clientela.scoring.domain.tiers import TieringPolicy
from clientela.scoring.domain.value_model import DecayedSpendModel
from clientela.shared.contracts import (
    Envelope,
    ProfileChangedEvent,
    ScoresUpdated,
    ScoresUpdatedEvent,
    Tier,
    TierChangedEvent,
    TierMove,
    derived_event_id,
)
from clientela.shared.contracts.topics import SCORES, TIER_CHANGES

E = TypeVar("E", bound=Envelope)

MakeProfile = Callable[..., ProfileChangedEvent]


class FakeScoreStore:
    """Scores in a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredScore] = {}
        self.value_queries = 0

    async def get_many(self, profile_ids: Sequence[str]) -> dict[str, StoredScore]:
        return {pid: self.rows[pid] for pid in profile_ids if pid in self.rows}

    async def customer_values(self) -> dict[str, float]:
        self.value_queries += 1
        return {
            pid: s.scores.predicted_value for pid, s in self.rows.items() if s.tier is not Tier.P
        }

    async def save_many(self, scores: Sequence[ScoresUpdated], updated_at: datetime) -> None:
        for s in scores:
            kept = self.rows.get(s.profile_id)
            if kept is None or kept.profile_version < s.profile_version:
                self.rows[s.profile_id] = StoredScore(s, updated_at)


class FakeUnitOfWork:
    """Keeps what a transaction did; nothing shows unless committed."""

    def __init__(self) -> None:
        self._scores = FakeScoreStore()
        self.inbox: set[str] = set()
        self.outbox: list[OutgoingEvent] = []
        self.history: list[TierTransition] = []
        self.commits = 0
        self._pending: tuple[list[OutgoingEvent], list[TierTransition]] = ([], [])

    @property
    def scores(self) -> FakeScoreStore:
        return self._scores

    async def __aenter__(self) -> Self:
        self._pending = ([], [])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._pending = ([], [])

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        new = set(event_ids) - self.inbox
        self.inbox |= new
        return new

    async def record_tier_changes(self, changes: Sequence[TierTransition]) -> None:
        self._pending[1].extend(changes)

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        self._pending[0].extend(events)

    async def commit(self) -> None:
        self.outbox.extend(self._pending[0])
        self.history.extend(self._pending[1])
        self._pending = ([], [])
        self.commits += 1

    def events(self, kind: type[E]) -> list[E]:
        return [o.event for o in self.outbox if isinstance(o.event, kind)]


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def score(now: datetime) -> ScoreProfiles:
    population = PopulationCache(TieringPolicy(), refresh_s=5.0, clock=lambda: 0.0)
    return ScoreProfiles(DecayedSpendModel(), population, clock=lambda: now)


def msg(event: ProfileChangedEvent, accepted_at_ms: int | None = None) -> ProfileChangeMessage:
    return ProfileChangeMessage(event, accepted_at_ms)


async def test_first_purchase_scores_and_enters_tier_a(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    cause = profile_changed("p-1", 1, spend="100", correlation_id="corr-1")
    outcome = await score([msg(cause, 1234)], uow)

    assert (outcome.scored, outcome.tier_changes, outcome.staged) == (1, 1, True)
    assert [(o.topic, o.key, o.accepted_at_ms) for o in uow.outbox] == [
        (SCORES, "p-1", 1234),
        (TIER_CHANGES, "p-1", 1234),
    ]
    (updated,) = uow.events(ScoresUpdatedEvent)
    assert updated.event_id == derived_event_id("scores.updated", "p-1", "1")
    assert (updated.causation_id, updated.correlation_id) == (cause.event_id, "corr-1")
    assert updated.data.tier is Tier.A
    assert updated.data.predicted_value == pytest.approx(100)
    assert updated.data.model_version == "decayed-spend-v0"
    assert {r.code for r in updated.data.reasons} >= {
        "predicted_value",
        "total_spend",
        "days_since_last_purchase",
        "a_cutoff",
    }
    (changed,) = uow.events(TierChangedEvent)
    assert changed.event_id == derived_event_id("tier.changed", "p-1", "1")
    assert (changed.data.from_tier, changed.data.to_tier) == (None, Tier.A)
    assert changed.data.move is TierMove.ENTERED
    assert changed.causation_id == cause.event_id
    assert [(h.profile_id, h.from_tier, h.to_tier) for h in uow.history] == [("p-1", None, Tier.A)]


async def test_correlation_defaults_to_the_cause(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    cause = profile_changed("p-1", 1, spend="5")
    await score([msg(cause)], uow)
    assert {o.event.correlation_id for o in uow.outbox} == {cause.event_id}
    assert {o.accepted_at_ms for o in uow.outbox} == {None}


async def test_prospect_enters_tier_p(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    await score([msg(profile_changed("p-1", 1))], uow)
    (updated,) = uow.events(ScoresUpdatedEvent)
    assert (updated.data.tier, updated.data.predicted_value) == (Tier.P, 0)
    (changed,) = uow.events(TierChangedEvent)
    assert (changed.data.from_tier, changed.data.to_tier) == (None, Tier.P)


async def test_redelivery_is_a_no_op(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    event = profile_changed("p-1", 1, spend="100")
    await score([msg(event)], uow)
    staged = list(uow.outbox)

    outcome = await score([msg(event)], uow)

    assert (outcome.scored, outcome.staged, outcome.ignored) == (0, False, 1)
    assert uow.outbox == staged


async def test_older_version_is_skipped(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    await score([msg(profile_changed("p-1", 3, spend="100"))], uow)
    outcome = await score([msg(profile_changed("p-1", 2, spend="5000"))], uow)
    assert outcome.scored == 0
    assert uow.scores.rows["p-1"].profile_version == 3
    assert len(uow.events(ScoresUpdatedEvent)) == 1


async def test_only_the_newest_version_in_a_batch_is_scored(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    batch = [
        msg(profile_changed("p-1", 2, spend="20")),
        msg(profile_changed("p-1", 4, spend="40")),
        msg(profile_changed("p-1", 3, spend="30")),
    ]
    outcome = await score(batch, uow)
    assert (outcome.scored, outcome.ignored) == (1, 2)
    (updated,) = uow.events(ScoresUpdatedEvent)
    assert updated.data.profile_version == 4
    assert updated.data.predicted_value == pytest.approx(40)
    assert len(uow.inbox) == 3


async def test_tier_change_is_emitted_once(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    await score([msg(profile_changed("p-1", 1, spend="100"))], uow)
    await score([msg(profile_changed("p-1", 2, spend="150"))], uow)
    await score([msg(profile_changed("p-1", 3, spend="180"))], uow)

    assert [e.data.profile_version for e in uow.events(ScoresUpdatedEvent)] == [1, 2, 3]
    assert [e.data.to_tier for e in uow.events(TierChangedEvent)] == [Tier.A]


async def test_a_new_top_customer_ranks_against_the_population(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    await score([msg(profile_changed("small", 1, spend="10"))], uow)
    await score([msg(profile_changed("big", 1, spend="90"))], uow)
    # The stored tier of "small" moves only when its own profile changes.
    await score([msg(profile_changed("small", 2, spend="10"))], uow)

    moves = [
        (e.data.profile_id, e.data.from_tier, e.data.to_tier, e.data.move)
        for e in uow.events(TierChangedEvent)
    ]
    assert moves == [
        ("small", None, Tier.A, TierMove.ENTERED),
        ("big", None, Tier.A, TierMove.ENTERED),
        ("small", Tier.A, Tier.B, TierMove.DOWN),
    ]


async def test_batch_values_replace_stored_ones_when_ranking(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    await score(
        [msg(profile_changed("a", 1, spend="90")), msg(profile_changed("b", 1, spend="10"))], uow
    )
    # "a" drops to 10 while "b" grows to 90: ranked on the new values, b is A and a is B.
    await score(
        [msg(profile_changed("a", 2, spend="10")), msg(profile_changed("b", 2, spend="90"))], uow
    )
    latest = {pid: s.tier for pid, s in uow.scores.rows.items()}
    assert latest == {"a": Tier.B, "b": Tier.A}


async def test_population_is_loaded_once_within_the_refresh_age(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    for version in (1, 2, 3):
        await score([msg(profile_changed("p-1", version, spend=str(10 * version)))], uow)
    assert uow.scores.value_queries == 1


async def test_nothing_is_kept_when_the_batch_fails(
    score: ScoreProfiles, uow: FakeUnitOfWork, profile_changed: MakeProfile
) -> None:
    async def broken(events: Sequence[OutgoingEvent]) -> None:
        raise RuntimeError("outbox unavailable")

    uow.stage = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await score([msg(profile_changed("p-1", 1, spend="100"))], uow)
    assert uow.outbox == []
    assert uow.commits == 0
