"""The SQL unit of work and read model on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, ClassVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.scoring.adapters.outbound import tables
from clientela.scoring.adapters.outbound.sql_reader import SqlScoreReader
from clientela.scoring.adapters.outbound.sql_unit_of_work import SqlScoringUnitOfWork
from clientela.scoring.application.ports import (
    ErasureMessage,
    ProfileChangeMessage,
)
from clientela.scoring.application.queries import tier_summary
from clientela.scoring.application.score_profiles import ScoreProfiles
from clientela.scoring.application.service import ScoringApplication, ScoringConfig
from clientela.scoring.migrations import MIGRATIONS
from clientela.shared.codec import (
    HEADER_ACCEPTED_AT,
    HEADER_EVENT_ID,
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    EncodedEvent,
)
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ScoresUpdatedEvent,
    Tier,
    TierChangedEvent,
    derived_event_id,
)
from clientela.shared.contracts.topics import TIER_CHANGES
from clientela.shared.db import create_engine
from clientela.shared.migrations import upgrade
from clientela.shared.outbox import staged_records
from clientela.shared.settings import DatabaseSettings, KafkaSettings

KAFKA = KafkaSettings(topic_prefix="it.")

MakeProfile = Callable[..., ProfileChangedEvent]


@pytest.fixture
async def engine(database_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    await upgrade(database_settings, MIGRATIONS)
    engine = create_engine(database_settings, tables.SERVICE)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def application(engine: AsyncEngine, now: datetime) -> ScoringApplication:
    return ScoringApplication(
        ScoringConfig(cutoff_refresh_s=0.0),
        lambda: SqlScoringUnitOfWork(engine, KAFKA),
        lambda: now,
    )


@pytest.fixture
def score(application: ScoringApplication) -> ScoreProfiles:
    return application.score_profiles


async def outbox_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await staged_records(conn, tables.outbox)
    return [
        {
            "topic": r.topic,
            "key": r.key.decode() if r.key is not None else None,
            "value": json.loads(r.value) if r.value is not None else None,
            "headers": {k: v.decode("latin-1") for k, v in r.headers},
        }
        for r in rows
    ]


async def test_first_change_stages_scores_and_tier_entered_then_redelivery_is_a_no_op(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    cause = profile_changed("p-1", 1, spend="250.75")
    message = ProfileChangeMessage(cause, accepted_at_ms=1_700_000_000_000)

    outcome = await score([message], SqlScoringUnitOfWork(engine, KAFKA))

    assert (outcome.scored, outcome.tier_changes) == (1, 1)
    rows = await outbox_rows(engine)
    assert [(r["topic"], r["key"], r["value"]["type"]) for r in rows] == [
        ("it.scores.v1", "p-1", "scores.updated"),
        ("it.tier-changes.v1", "p-1", "tier.changed"),
    ]
    changed = rows[1]["value"]
    assert changed["event_id"] == derived_event_id("tier.changed", "p-1", "t1")
    assert changed["causation_id"] == cause.event_id
    assert (changed["data"]["from_tier"], changed["data"]["to_tier"]) == (None, "A")
    assert changed["data"]["move"] == "entered"
    assert rows[0]["headers"][HEADER_EVENT_ID] == derived_event_id("scores.updated", "p-1", "r1")
    assert rows[0]["headers"][HEADER_ACCEPTED_AT] == "1700000000000"

    again = await score([message], SqlScoringUnitOfWork(engine, KAFKA))

    assert again.scored == 0
    assert len(await outbox_rows(engine)) == 2


async def test_newer_version_with_the_same_tier_stages_scores_only(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    await score(
        [ProfileChangeMessage(profile_changed("p-1", 1, spend="100"))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    await score(
        [ProfileChangeMessage(profile_changed("p-1", 2, spend="130"))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )

    types = [
        (r["value"]["type"], r["value"]["data"]["profile_version"])
        for r in await outbox_rows(engine)
    ]
    assert types == [("scores.updated", 1), ("tier.changed", 1), ("scores.updated", 2)]
    reader = SqlScoreReader(engine)
    stored = await reader.get("p-1")
    assert stored is not None
    assert (stored.profile_version, stored.tier) == (2, Tier.A)
    assert stored.scores.predicted_value == pytest.approx(130)
    assert stored.updated_at.tzinfo is not None
    async with engine.connect() as conn:
        history = (await conn.execute(select(tables.tier_history))).all()
    assert [(h.profile_id, h.from_tier, h.to_tier, h.profile_version) for h in history] == [
        ("p-1", None, "A", 1)
    ]


async def test_older_version_never_overwrites_and_the_read_model_summarises(
    engine: AsyncEngine,
    score: ScoreProfiles,
    application: ScoringApplication,
    profile_changed: MakeProfile,
    now: datetime,
) -> None:
    batch = [
        ProfileChangeMessage(profile_changed("big", 5, spend="90")),
        ProfileChangeMessage(profile_changed("small", 1, spend="10")),
        ProfileChangeMessage(profile_changed("new", 1)),
    ]
    await score(batch, SqlScoringUnitOfWork(engine, KAFKA))
    late = await score(
        [ProfileChangeMessage(profile_changed("big", 4, spend="1"))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    assert late.scored == 0

    reader = SqlScoreReader(engine)
    assert await reader.get("nobody") is None
    totals = {t.tier: (t.count, t.value) for t in await reader.tier_totals()}
    assert totals == {Tier.A: (1, 90.0), Tier.B: (1, 10.0), Tier.P: (1, 0.0)}
    assert await reader.ping()

    # A restarted process rebuilds the same population and summary from the table.
    restarted = ScoringApplication(
        ScoringConfig(), lambda: SqlScoringUnitOfWork(engine, KAFKA), lambda: now
    )
    await restarted.load()
    summary = tier_summary(restarted.population, restarted.ranking, "decayed-spend-v0")
    shares = {t.tier: (t.count, round(t.value_share, 3)) for t in summary.tiers}
    assert shares == {Tier.A: (1, 0.9), Tier.B: (1, 0.1), Tier.C: (0, 0.0), Tier.P: (1, 0.0)}
    assert (summary.cutoffs.a_cutoff, summary.cutoffs.b_cutoff) == (90.0, 10.0)
    assert (await restarted.sweep()).tier_changes == 0


async def test_a_failed_batch_leaves_nothing_behind(
    engine: AsyncEngine,
    score: ScoreProfiles,
    application: ScoringApplication,
    profile_changed: MakeProfile,
) -> None:
    class BrokenUnitOfWork(SqlScoringUnitOfWork):
        async def write_scored(self, *args: Any) -> None:
            await super().write_scored(*args)  # everything written, then the commit never comes
            raise RuntimeError("disk full")

    message = ProfileChangeMessage(profile_changed("p-1", 1, spend="10"))
    with pytest.raises(RuntimeError):
        await score([message], BrokenUnitOfWork(engine, KAFKA))
    assert len(application.population) == 0
    assert await outbox_rows(engine) == []
    assert await SqlScoreReader(engine).get("p-1") is None

    # The rolled-back claim lets the redelivered event through.
    outcome = await score([message], SqlScoringUnitOfWork(engine, KAFKA))
    assert outcome.scored == 1


async def test_parameters_are_versioned_and_reloaded(
    engine: AsyncEngine, application: ScoringApplication, now: datetime
) -> None:
    from clientela.scoring.domain.clv import BgNbdParams, GammaGammaParams
    from clientela.scoring.domain.value_model import FittedParameters

    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        for version in (1, 2):
            await uow.parameters.add(
                FittedParameters(
                    version=version,
                    bgnbd=BgNbdParams(0.243, 4.414, 0.793, 2.426),
                    gamma_gamma=GammaGammaParams(6.25, 3.74, 15.44),
                    period_days=7.0,
                    fitted_at=now,
                    as_of=now,
                    customer_count=2357,
                    repeat_customer_count=946,
                    bgnbd_log_likelihood=-9582.4,
                    gamma_gamma_log_likelihood=-4055.9,
                )
            )
        await uow.commit()
    await application.load()
    assert application.models.model.model_version == "bgnbd-gg-v2"
    parameters = application.models.parameters
    assert parameters is not None
    assert parameters.bgnbd == BgNbdParams(0.243, 4.414, 0.793, 2.426)
    assert parameters.fitted_at == now


async def test_state_is_read_only_when_asked_and_is_what_was_published(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    await score(
        [ProfileChangeMessage(profile_changed("p-1", 1, spend="100", purchases=3))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        counters = (await uow.scores.get_many(["p-1"]))["p-1"]
        full = (await uow.scores.get_many(["p-1"], with_state=True))["p-1"]
    assert counters.state == b""
    assert (counters.revision, counters.tier, counters.facts) == (1, Tier.A, full.facts)
    published = (await outbox_rows(engine))[0]["value"]
    assert json.loads(full.state) == published["data"]
    assert full.scores.segment is not None


async def test_erasure_leaves_no_row_keyed_by_the_profile_and_stages_a_tombstone(
    engine: AsyncEngine,
    score: ScoreProfiles,
    application: ScoringApplication,
    profile_changed: MakeProfile,
) -> None:
    gone, kept = "erased-profile-1", "kept-profile-1"
    await score(
        [
            ProfileChangeMessage(profile_changed(gone, 1, spend="900")),
            ProfileChangeMessage(profile_changed(kept, 1, spend="100")),
        ],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    erasure = ErasureMessage(derived_event_id("profile.erased", gone, "request-1"), gone)

    assert await application.erase_profiles([erasure], SqlScoringUnitOfWork(engine, KAFKA)) == 1

    # Every table of the service, every column: the id survives only as the tombstone's key.
    mentions: dict[str, int] = {}
    async with engine.connect() as conn:
        for table in tables.metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            hits = sum(1 for row in rows if gone in repr(tuple(row)))
            if hits:
                mentions[table.name] = hits
    assert mentions == {"outbox": 1}
    (tombstone,) = [r for r in await outbox_rows(engine) if r["key"] == gone]
    assert (tombstone["topic"], tombstone["value"]) == ("it.scores.v1", None)
    assert await SqlScoreReader(engine).get(gone) is None
    assert application.population.rows_of([gone, kept]) == [0]

    # An in-flight change of the erased profile does not bring it back, even after a restart;
    # a redelivered erasure is a no-op.
    restarted = ScoringApplication(
        ScoringConfig(cutoff_refresh_s=0.0), lambda: SqlScoringUnitOfWork(engine, KAFKA)
    )
    await restarted.load()
    late = await restarted.score_profiles(
        [ProfileChangeMessage(profile_changed(gone, 2, spend="950"))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    again = await restarted.erase_profiles([erasure], SqlScoringUnitOfWork(engine, KAFKA))
    assert (late.scored, again) == (0, 0)
    assert await SqlScoreReader(engine).get(gone) is None
    assert len(restarted.population) == 1


async def test_the_inputs_fingerprint_is_stored_so_an_unchanged_profile_is_not_rescored(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    await score(
        [ProfileChangeMessage(profile_changed("p-1", 1, spend="100", purchases=2))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    same = await score(
        [ProfileChangeMessage(profile_changed("p-1", 2, spend="100", purchases=2))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    changed = await score(
        [ProfileChangeMessage(profile_changed("p-1", 3, spend="120", purchases=2))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )

    assert (same.scored, changed.scored) == (0, 1)
    stored = await SqlScoreReader(engine).get("p-1")
    assert stored is not None
    assert stored.profile_version == 3


async def test_a_cost_only_change_is_stored_then_published_by_the_sweep(
    engine: AsyncEngine, application: ScoringApplication, profile_changed: MakeProfile
) -> None:
    first = [
        ProfileChangeMessage(profile_changed("p-1", 1, spend="100")),
        ProfileChangeMessage(profile_changed("q-1", 1, touchpoint_count=3)),
    ]
    # q-1's fourth touchpoint stays in its bucket (3-6): stored, not published.
    visits = [
        ProfileChangeMessage(profile_changed("p-1", 3, spend="100", cost_to_serve="2.5")),
        ProfileChangeMessage(profile_changed("q-1", 2, touchpoint_count=4, cost_to_serve="0.3")),
    ]
    late = [ProfileChangeMessage(profile_changed("p-1", 2, spend="100", cost_to_serve="1"))]
    await application.score_profiles(first, SqlScoringUnitOfWork(engine, KAFKA))
    staged = len(await outbox_rows(engine))

    outcome = await application.score_profiles(visits, SqlScoringUnitOfWork(engine, KAFKA))
    await application.score_profiles(late, SqlScoringUnitOfWork(engine, KAFKA))
    await application.score_profiles(visits, SqlScoringUnitOfWork(engine, KAFKA))

    assert outcome.scored == 0
    assert len(await outbox_rows(engine)) == staged
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        stored = await uow.scores.get_many(["p-1", "q-1"])
        assert await uow.stale_ids() == ["p-1", "q-1"]
    # The older version 2 came after version 3: its lower cost is not stored.
    assert {p: (r.profile_version, r.cost_to_serve, r.republish) for p, r in stored.items()} == {
        "p-1": (3, 2.5, True),
        "q-1": (2, 0.3, True),
    }
    features = stored["q-1"].prospect_features
    assert features is not None
    assert features.touchpoints == 4.0

    swept = await application.sweep()

    rows = await outbox_rows(engine)
    published = {
        r["key"]: (r["value"]["data"]["profile_version"], r["value"]["data"]["cost_to_serve"])
        for r in rows[staged:]
    }
    assert published == {"p-1": (3, 2.5), "q-1": (2, 0.3)}
    assert swept.changed == 2
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        assert await uow.stale_ids() == []


async def test_an_unpublished_change_keeps_a_customers_pre_purchase_snapshot(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    for change in (
        profile_changed("r-1", 1, touchpoint_count=5),
        profile_changed("r-1", 2, spend="50", touchpoint_count=6),
        profile_changed("r-1", 3, spend="50", touchpoint_count=7, cost_to_serve="1.5"),
    ):
        await score([ProfileChangeMessage(change)], SqlScoringUnitOfWork(engine, KAFKA))

    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        stored = (await uow.scores.get_many(["r-1"]))["r-1"]
    assert (stored.profile_version, stored.cost_to_serve, stored.republish) == (3, 1.5, True)
    assert stored.prospect_features is not None
    assert stored.prospect_features.touchpoints == 5.0


async def test_profile_changes_claim_no_inbox_rows_and_every_repeat_is_a_no_op(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    scored = ProfileChangeMessage(profile_changed("p-1", 1, spend="100"))
    nothing_read = ProfileChangeMessage(profile_changed("p-1", 2, spend="100"))
    cost_only = ProfileChangeMessage(profile_changed("p-1", 3, spend="100", cost_to_serve="2"))
    for batch in ([scored], [nothing_read], [cost_only]):
        await score(batch, SqlScoringUnitOfWork(engine, KAFKA))
    staged = await outbox_rows(engine)
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        before = (await uow.scores.get_many(["p-1"]))["p-1"]

    # Redelivered one by one and all together, as after a crash before the offset commit.
    outcomes = [
        await score(batch, SqlScoringUnitOfWork(engine, KAFKA))
        for batch in ([scored], [nothing_read], [cost_only], [scored, nothing_read, cost_only])
    ]

    assert [o.scored for o in outcomes] == [0, 0, 0, 0]
    assert await outbox_rows(engine) == staged
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        assert (await uow.scores.get_many(["p-1"]))["p-1"] == before
    async with engine.connect() as conn:
        assert (await conn.execute(select(tables.inbox))).all() == []


class _TierChangedV2(TierChangedEvent):
    SCHEMA_VERSION: ClassVar[int] = 2


async def test_headers_carry_the_contracts_type_and_schema_version(
    engine: AsyncEngine, score: ScoreProfiles, profile_changed: MakeProfile
) -> None:
    await score(
        [ProfileChangeMessage(profile_changed("p-1", 1, spend="100"))],
        SqlScoringUnitOfWork(engine, KAFKA),
    )
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        await uow.stage_encoded([EncodedEvent(TIER_CHANGES, "p-2", _TierChangedV2, "e-2", b"{}")])
        await uow.commit()

    rows = await outbox_rows(engine)
    assert [(r["headers"][HEADER_TYPE], r["headers"][HEADER_SCHEMA_VERSION]) for r in rows] == [
        (ScoresUpdatedEvent.EVENT_TYPE, str(ScoresUpdatedEvent.SCHEMA_VERSION)),
        (TierChangedEvent.EVENT_TYPE, str(TierChangedEvent.SCHEMA_VERSION)),
        (TierChangedEvent.EVENT_TYPE, "2"),
    ]
    assert [r["value"]["schema_version"] for r in rows[:2]] == [
        ScoresUpdatedEvent.SCHEMA_VERSION,
        TierChangedEvent.SCHEMA_VERSION,
    ]


async def test_a_batch_loads_the_same_records_as_the_store_and_the_erased_ids(
    engine: AsyncEngine,
    application: ScoringApplication,
    score: ScoreProfiles,
    profile_changed: MakeProfile,
) -> None:
    for changes in (
        [
            profile_changed("l-1", 1, touchpoint_count=5),
            profile_changed("l-2", 1, spend="80"),
            profile_changed("l-3", 1, touchpoint_count=2),
            profile_changed("l-4", 1, spend="10"),
        ],
        [profile_changed("l-1", 2, spend="50", touchpoint_count=6)],
        [profile_changed("l-2", 2, spend="80", cost_to_serve="2.25")],
    ):
        await score([ProfileChangeMessage(c) for c in changes], SqlScoringUnitOfWork(engine, KAFKA))
    await application.erase_profiles(
        [ErasureMessage("x-1", "l-4")], SqlScoringUnitOfWork(engine, KAFKA)
    )
    ids = ["l-1", "l-2", "l-3", "l-4", "l-5"]

    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        loaded = await uow.load_batch(ids)
        expected = await uow.scores.get_many(ids)

    assert sorted(loaded.stored) == ["l-1", "l-2", "l-3"]
    assert loaded.stored == expected
    assert loaded.erased == {"l-4"}
    customer, kept, prospect = (loaded.stored[p] for p in ("l-1", "l-2", "l-3"))
    assert customer.facts is not None
    assert customer.prospect_features is not None
    assert (kept.cost_to_serve, kept.republish) == (2.25, True)
    assert prospect.facts is None
    assert prospect.prospect_features is not None
    assert all(r.updated_at.tzinfo is not None for r in loaded.stored.values())


async def test_a_batch_that_scores_some_and_keeps_others_writes_both_or_neither(
    engine: AsyncEngine, application: ScoringApplication, profile_changed: MakeProfile
) -> None:
    first = [
        ProfileChangeMessage(profile_changed("p-1", 1, spend="100")),
        ProfileChangeMessage(profile_changed("p-2", 1, spend="40")),
        ProfileChangeMessage(profile_changed("q-1", 1, touchpoint_count=3)),
    ]
    mixed = [
        ProfileChangeMessage(profile_changed("p-1", 2, spend="100", cost_to_serve="2.5")),
        ProfileChangeMessage(profile_changed("p-2", 2, spend="90")),
        ProfileChangeMessage(profile_changed("q-1", 2, touchpoint_count=4, cost_to_serve="0.3")),
    ]
    await application.score_profiles(first, SqlScoringUnitOfWork(engine, KAFKA))
    staged = len(await outbox_rows(engine))

    class BrokenUnitOfWork(SqlScoringUnitOfWork):
        async def commit(self) -> None:
            raise RuntimeError("connection lost")

    with pytest.raises(RuntimeError):
        await application.score_profiles(mixed, BrokenUnitOfWork(engine, KAFKA))
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        untouched = await uow.scores.get_many(["p-1", "p-2", "q-1"])
    assert {p: r.profile_version for p, r in untouched.items()} == {"p-1": 1, "p-2": 1, "q-1": 1}

    outcome = await application.score_profiles(mixed, SqlScoringUnitOfWork(engine, KAFKA))
    again = await application.score_profiles(mixed, SqlScoringUnitOfWork(engine, KAFKA))

    assert (outcome.scored, again.scored) == (1, 0)
    rows = await outbox_rows(engine)
    assert [(r["key"], r["value"]["data"]["profile_version"]) for r in rows[staged:]] == [
        ("p-2", 2)
    ]
    async with SqlScoringUnitOfWork(engine, KAFKA) as uow:
        stored = await uow.scores.get_many(["p-1", "p-2", "q-1"])
        assert await uow.stale_ids() == ["p-1", "q-1"]
    assert {p: (r.profile_version, r.cost_to_serve, r.republish) for p, r in stored.items()} == {
        "p-1": (2, 2.5, True),
        "p-2": (2, 0.0, False),
        "q-1": (2, 0.3, True),
    }
    features = stored["q-1"].prospect_features
    assert features is not None
    assert features.touchpoints == 4.0
