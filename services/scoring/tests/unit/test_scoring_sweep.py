"""Sweeps and refits on an in-memory unit of work: decay moves tiers once, refits are versioned."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from clientela.scoring.application.ports import ProfileChangeMessage
from clientela.scoring.application.refit import NotEnoughDataError
from clientela.scoring.application.service import ScoringApplication, ScoringConfig
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ScoresUpdatedEvent,
    Tier,
    TierChangedEvent,
    TierMove,
)

MakeProfile = Callable[..., ProfileChangedEvent]


async def seed(
    application: ScoringApplication, uow: Any, events: list[ProfileChangedEvent]
) -> None:
    await application.score_profiles([ProfileChangeMessage(e) for e in events], uow)


async def test_a_sweep_reranks_everyone_and_publishes_each_move_once(
    application: ScoringApplication, uow: Any, clock: Any, profile_changed: MakeProfile
) -> None:
    # "small" is A alone; "big" then arrives. A stream re-scores only the changed profile,
    # so "small" keeps its stored A until the sweep re-ranks the whole population.
    await seed(application, uow, [profile_changed("small", 1, spend="10")])
    await seed(application, uow, [profile_changed("big", 1, spend="90")])
    assert uow.scores.rows["small"].tier is Tier.A
    before = len(uow.outbox)

    clock.now += timedelta(days=1)
    first = await application.sweep()
    second = await application.sweep()

    assert (first.customers, first.changed, first.tier_changes) == (2, 1, 1)
    assert (second.changed, second.tier_changes) == (0, 0)
    (move,) = uow.events(TierChangedEvent)[-1:]
    assert (move.data.profile_id, move.data.from_tier, move.data.to_tier, move.data.move) == (
        "small",
        Tier.A,
        Tier.B,
        TierMove.DOWN,
    )
    assert (move.causation_id, move.correlation_id) == (first.sweep_id, first.sweep_id)
    new_events = uow.outbox[before:]
    assert len(new_events) == 2
    assert len({o.event.event_id for o in new_events}) == 2
    assert uow.scores.rows["small"].tier_seq == 2


async def test_time_alone_moves_tiers_at_the_next_sweep(
    application: ScoringApplication, uow: Any, clock: Any, profile_changed: MakeProfile
) -> None:
    # Equal spend; "lapsing" last bought a year before "steady". Both A at first (tie-free:
    # lapsing is worth half). After two more years lapsing is worth a quarter of steady.
    await seed(
        application,
        uow,
        [
            profile_changed("steady", 1, spend="100", days_ago=0),
            profile_changed("lapsing", 1, spend="100", days_ago=365),
        ],
    )
    assert uow.scores.rows["lapsing"].tier is Tier.A
    clock.now += timedelta(days=1)
    assert (await application.sweep()).tier_changes == 0
    # Same decay for both: shares do not change, nobody moves. Now steady buys again.
    await seed(application, uow, [profile_changed("steady", 2, spend="400", now=clock.now)])
    outcome = await application.sweep()
    assert outcome.tier_changes == 1
    assert uow.scores.rows["lapsing"].tier is not Tier.A


async def test_refit_needs_enough_customers(application: ScoringApplication) -> None:
    with pytest.raises(NotEnoughDataError):
        await application.refit()


async def test_refit_installs_a_versioned_model_and_streaming_uses_it(
    uow: Any, clock: Any, profile_changed: MakeProfile
) -> None:
    rng = np.random.default_rng(3)
    application = ScoringApplication(ScoringConfig(cutoff_refresh_s=0.0), uow, clock)
    events = []
    for i in range(300):
        purchases = int(rng.integers(1, 8))
        first = float(rng.uniform(100, 700))
        last = float(rng.uniform(0, first)) if purchases > 1 else first
        events.append(
            profile_changed(
                f"c-{i}",
                1,
                spend=str(20 * purchases),
                purchases=purchases,
                days_ago=last,
                first_days_ago=first,
            )
        )
    await seed(application, uow, events)

    fitted = await application.refit()
    again = await application.refit()

    assert (fitted.version, again.version) == (1, 2)
    assert [p.version for p in await uow.parameters.history(5)] == [2, 1]
    assert application.models.model.model_version == "bgnbd-gg-v2"
    await seed(
        application,
        uow,
        [profile_changed("c-0", 2, spend="500", purchases=9, days_ago=1, first_days_ago=400)],
    )
    latest = uow.events(ScoresUpdatedEvent)[-1].data
    assert latest.model_version == "bgnbd-gg-v2"
    assert latest.probability_alive is not None
    assert latest.expected_purchases is not None
    assert latest.expected_purchases > 0
    assert latest.horizon_weeks == 52


async def test_restart_reloads_population_and_parameters(
    uow: Any, clock: Any, profile_changed: MakeProfile, application: ScoringApplication
) -> None:
    await seed(application, uow, [profile_changed("a", 1, spend="10"), profile_changed("p", 1)])
    restarted = ScoringApplication(ScoringConfig(cutoff_refresh_s=0.0), uow, clock)
    await restarted.load()
    assert len(restarted.population) == 1
    assert restarted.population.prospects == {"p"}
    outcome = await restarted.sweep()
    assert outcome.tier_changes == 0


async def test_a_sweep_publishes_the_costs_streaming_stored_once(
    application: ScoringApplication, uow: Any, clock: Any, profile_changed: MakeProfile
) -> None:
    await seed(
        application,
        uow,
        [profile_changed("p-1", 1, spend="100"), profile_changed("q-1", 1, touchpoint_count=3)],
    )
    await seed(
        application,
        uow,
        [
            profile_changed("p-1", 2, spend="100", cost_to_serve="4.5"),
            profile_changed("q-1", 2, touchpoint_count=3, cost_to_serve="0.25"),
        ],
    )
    before = len(uow.outbox)

    clock.now += timedelta(minutes=15)
    first = await application.sweep()
    second = await application.sweep()

    updates = [o.event for o in uow.outbox[before:]]
    assert all(isinstance(e, ScoresUpdatedEvent) for e in updates)
    published = {
        e.data.profile_id: (e.data.profile_version, e.data.cost_to_serve, e.causation_id)
        for e in updates
        if isinstance(e, ScoresUpdatedEvent)
    }
    assert published == {
        "p-1": (2, pytest.approx(4.5), first.sweep_id),
        "q-1": (2, pytest.approx(0.25), first.sweep_id),
    }
    assert (first.changed, second.changed) == (2, 0)
    assert await uow.stale_ids() == []
    assert uow.scores.rows["p-1"].revision == 2
