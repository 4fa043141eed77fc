"""Erasure on an in-memory unit of work: forgotten everywhere, tombstoned, never resurrected."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from clientela.scoring.application.population import Population
from clientela.scoring.application.ports import ErasureMessage, ProfileChangeMessage, ScoreRecord
from clientela.scoring.application.service import ScoringApplication
from clientela.scoring.domain.facts import CustomerFacts
from clientela.scoring.domain.tiers import TieringPolicy
from clientela.shared.contracts import Lifecycle, ProfileChangedEvent, Tier
from clientela.shared.contracts.topics import SCORES

MakeProfile = Callable[..., ProfileChangedEvent]


async def test_erasure_forgets_the_profile_and_tombstones_its_scores(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    await application.score_profiles(
        [
            ProfileChangeMessage(profile_changed("gone", 1, spend="900")),
            ProfileChangeMessage(profile_changed("kept", 1, spend="100")),
            ProfileChangeMessage(profile_changed("prospect", 1)),
        ],
        uow,
    )
    assert {h.profile_id for h in uow.history} == {"gone", "kept", "prospect"}

    erased = await application.erase_profiles(
        [ErasureMessage("erase-1", "gone"), ErasureMessage("erase-2", "prospect")], uow
    )

    assert erased == 2
    assert set(uow.scores.rows) == {"kept"}
    assert {h.profile_id for h in uow.history} == {"kept"}
    assert sorted(uow.tombstones) == [(SCORES, "gone"), (SCORES, "prospect")]
    population = application.population
    assert (len(population), population.prospects) == (1, set())
    assert population.rows_of(["gone", "kept"]) == [0]
    assert population.values().tolist() == [100.0]

    # A change that was already in flight, and a redelivered erasure, change nothing.
    late = await application.score_profiles(
        [ProfileChangeMessage(profile_changed("gone", 2, spend="950"))], uow
    )
    again = await application.erase_profiles([ErasureMessage("erase-1", "gone")], uow)

    assert (late.scored, again) == (0, 0)
    assert set(uow.scores.rows) == {"kept"}
    assert len(uow.tombstones) == 2


def _record(pid: str, value: float) -> ScoreRecord:
    return ScoreRecord(
        profile_id=pid,
        profile_version=1,
        revision=1,
        tier_seq=1,
        lifecycle=Lifecycle.CUSTOMER,
        tier=Tier.B,
        predicted_value=value,
        at_risk=False,
        facts=CustomerFacts(1, 1, 0.0, 0.0, value, 0.0),
        prospect_features=None,
        updated_at=datetime(2025, 1, 1, tzinfo=UTC),
    )


def test_population_removal_moves_the_last_row_into_the_gap() -> None:
    population = Population(TieringPolicy())
    population.apply(_record(pid, value) for pid, value in [("a", 1.0), ("b", 2.0), ("c", 3.0)])

    population.remove(["a", "missing"])

    assert len(population) == 2
    assert population.rows_of(["a", "b", "c"]) == [1, 0]
    assert population.values().tolist() == [3.0, 2.0]
    assert population.columns().ids == ["c", "b"]
    population.remove(["b", "c"])
    assert len(population) == 0
    population.apply([_record("d", 4.0)])
    assert population.values().tolist() == [4.0]
