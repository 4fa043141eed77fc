"""The accept-touchpoints use case, with fake ports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from clientela.ingest.application.accept_touchpoints import (
    Outcome,
    TooManyEventsError,
    TouchpointIntake,
)
from clientela.ingest.application.ports import PublishFailedError, RateCharge, RateLimitedError
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.touchpoints import IntakeContext, RecordedTouchpoint, SubmittedEvent

CONTEXT = IntakeContext("crm", datetime(2025, 3, 1, tzinfo=UTC), 1_740_787_200_000)


class FakeDeduplicator:
    """Remembers claimed ids in a set and records every call."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.claim_calls: list[list[str]] = []
        self.released: list[str] = []
        self.confirmed: list[str] = []

    async def claim(self, event_ids: Sequence[str]) -> list[bool]:
        self.claim_calls.append(list(event_ids))
        out = [i not in self.seen for i in event_ids]
        self.seen.update(event_ids)
        return out

    async def confirm(self, event_ids: Sequence[str]) -> None:
        self.confirmed.extend(event_ids)

    async def release(self, event_ids: Sequence[str]) -> None:
        self.released.extend(event_ids)
        self.seen.difference_update(event_ids)


class FakePublisher:
    """Collects published events; fails on demand."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[tuple[RecordedTouchpoint, int]] = []

    async def publish(self, events: Sequence[RecordedTouchpoint], accepted_at_ms: int) -> None:
        if self.fail:
            raise PublishFailedError("broker down")
        self.published.extend((e, accepted_at_ms) for e in events)


def visit(event_id: str | None = None, **overrides: Any) -> SubmittedEvent:
    payload: dict[str, Any] = {
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"anonymous_id": "anon-1"},
        "web_visit": {"url": "https://example.com/pricing"},
    }
    if event_id is not None:
        payload["event_id"] = event_id
    payload.update(overrides)
    return SubmittedEvent(payload, 200)


def make_intake(
    dedup: FakeDeduplicator, publisher: FakePublisher, policy: IntakePolicy | None = None
) -> TouchpointIntake:
    return TouchpointIntake(policy or IntakePolicy(), dedup, publisher)


async def test_mixed_submission_reports_each_event() -> None:
    dedup, publisher = FakeDeduplicator(), FakePublisher()
    dedup.seen.add("ingest-seen")
    intake = make_intake(dedup, publisher)
    report = await intake.accept(
        [visit("a"), visit("ingest-seen"), visit("b", channel="pigeon"), visit()], CONTEXT
    )
    assert [o.status for o in report.outcomes] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.REJECTED,
        Outcome.ACCEPTED,
    ]
    assert [o.index for o in report.outcomes] == [0, 1, 2, 3]
    assert report.outcomes[2].event_id == "b"
    assert report.outcomes[2].errors[0].path == "channel"
    assert (report.count(Outcome.ACCEPTED), report.count(Outcome.DUPLICATE)) == (2, 1)
    assert not report.all_rejected
    assert [e.event_id for e, _ in publisher.published] == ["a", report.outcomes[3].event_id]
    assert {ms for _, ms in publisher.published} == {CONTEXT.accepted_at_ms}


async def test_repeats_inside_one_submission_count_once_and_claim_once() -> None:
    dedup, publisher = FakeDeduplicator(), FakePublisher()
    report = await make_intake(dedup, publisher).accept(
        [visit("x"), visit("x"), visit("y"), visit("x")], CONTEXT
    )
    assert [o.status for o in report.outcomes] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
    ]
    assert dedup.claim_calls == [["x", "y"]]
    assert [e.event_id for e, _ in publisher.published] == ["x", "y"]


async def test_all_rejected_publishes_nothing_and_claims_nothing() -> None:
    dedup, publisher = FakeDeduplicator(), FakePublisher()
    report = await make_intake(dedup, publisher).accept([visit("a", kind="nope")], CONTEXT)
    assert report.all_rejected
    assert dedup.claim_calls == []
    assert publisher.published == []


async def test_failed_publish_releases_claims_so_a_retry_is_accepted() -> None:
    dedup, publisher = FakeDeduplicator(), FakePublisher(fail=True)
    dedup.seen.add("old")
    intake = make_intake(dedup, publisher)
    with pytest.raises(PublishFailedError):
        await intake.accept([visit("new"), visit("old")], CONTEXT)
    assert dedup.released == ["new"]
    assert dedup.seen == {"old"}

    publisher.fail = False
    report = await intake.accept([visit("new")], CONTEXT)
    assert [o.status for o in report.outcomes] == [Outcome.ACCEPTED]


async def test_too_many_events_is_refused_before_any_work() -> None:
    dedup, publisher = FakeDeduplicator(), FakePublisher()
    intake = make_intake(dedup, publisher, IntakePolicy(max_events=2))
    with pytest.raises(TooManyEventsError, match="3 events exceed the limit of 2"):
        await intake.accept([visit(), visit(), visit()], CONTEXT)
    assert dedup.claim_calls == []


async def test_ids_are_confirmed_only_after_the_publish_is_acknowledged() -> None:
    dedup, publisher = FakeDeduplicator(), FakePublisher()
    await make_intake(dedup, publisher).accept([visit("a"), visit("b", kind="nope")], CONTEXT)
    assert dedup.confirmed == ["a"]

    failing = FakeDeduplicator()
    with pytest.raises(PublishFailedError):
        await make_intake(failing, FakePublisher(fail=True)).accept([visit("c")], CONTEXT)
    assert failing.confirmed == []


class ChargingDeduplicator(FakeDeduplicator):
    """Spends a charge the way a store without shared limits does: with its own call."""

    def __init__(self) -> None:
        super().__init__()
        self.charges: list[RateCharge] = []

    async def claim(  # type: ignore[override]
        self, event_ids: Sequence[str], charge: RateCharge | None = None
    ) -> list[bool]:
        if charge is not None:
            self.charges.append(charge)
            await charge.spend()
        return await super().claim(event_ids)


class FakeSharedLimit:
    """A shared rate limit with a fixed budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    async def take(self, key: str, events: int) -> float:
        if events > self.budget:
            return 0.5
        self.budget -= events
        return 0.0


async def test_a_charge_travels_with_the_claim_and_a_refusal_accepts_nothing() -> None:
    dedup, publisher = ChargingDeduplicator(), FakePublisher()
    intake = make_intake(dedup, publisher)
    limit = FakeSharedLimit(3)
    report = await intake.accept(
        [visit("a"), visit("b")], CONTEXT, charge=RateCharge(limit, "pos", 2)
    )
    assert [o.status for o in report.outcomes] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert dedup.claim_calls == [["a", "b"]]
    assert limit.budget == 1
    with pytest.raises(RateLimitedError) as refused:
        await intake.accept([visit("c"), visit("d")], CONTEXT, charge=RateCharge(limit, "pos", 2))
    assert refused.value.retry_after_s == 1
    assert dedup.claim_calls == [["a", "b"]]  # nothing claimed, nothing published
    assert len(publisher.published) == 2


async def test_a_charge_is_spent_even_when_no_event_can_be_claimed() -> None:
    dedup, publisher = ChargingDeduplicator(), FakePublisher()
    limit = FakeSharedLimit(10)
    report = await make_intake(dedup, publisher).accept(
        [visit(kind="not-a-kind")], CONTEXT, charge=RateCharge(limit, "pos", 1)
    )
    assert [o.status for o in report.outcomes] == [Outcome.REJECTED]
    assert limit.budget == 9
    assert len(dedup.charges) == 1
