"""Events encoded from plain data are exactly the contract's: names, bounds, ids."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
import numpy as np
import pytest

from clientela.scoring.application.ports import ProfileChangeMessage
from clientela.scoring.application.scorer import kept_segment, within_contract
from clientela.scoring.application.service import ScoringApplication
from clientela.scoring.application.wire import derived_id, envelope
from clientela.scoring.bench import PARAMETERS
from clientela.scoring.domain.value_model import Estimates
from clientela.shared.contracts import (
    ProfileChangedEvent,
    ScoresUpdated,
    ScoresUpdatedEvent,
    TierChanged,
    TierChangedEvent,
    derived_event_id,
)

MakeProfile = Callable[..., ProfileChangedEvent]


@pytest.mark.parametrize(
    "parts",
    [("scores.updated", "p-1", "r1"), ("tier.changed", "ü-é", "t12"), ("x",), ("a", "", "b")],
)
def test_derived_id_is_the_shared_derived_event_id(parts: tuple[str, ...]) -> None:
    assert derived_id(*parts) == derived_event_id(*parts)


def test_estimates_are_brought_inside_the_contract() -> None:
    bounded = within_contract(
        Estimates(
            predicted_value=np.array([1.0, np.nan, -2.0, np.inf]),
            expected_purchases=np.array([0.5, np.nan, 1.0, 2.0]),
            probability_alive=np.array([0.5, 1.0000001, -0.1, np.nan]),
            expected_spend=None,
        )
    )
    assert bounded.predicted_value.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert bounded.probability_alive is not None
    assert bounded.probability_alive.tolist() == [0.5, 1.0, 0.0, 0.0]
    assert bounded.expected_spend is None


async def test_every_encoded_event_names_exactly_the_contract_fields(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    # The published CDNOW parameters: customers get every field a fitted model gives.
    application.models.install(PARAMETERS)
    web = {"counts_by_channel": {"web": 3}, "touchpoint_count": 3, "inbound_count": 3}
    events = [profile_changed("seen-first", 1, **web)] + [
        profile_changed(
            f"c-{i}",
            1,
            spend=f"{10 + 37 * i}.25",
            purchases=1 + i % 6,
            days_ago=7.0 * (i % 40),
            first_days_ago=7.0 * (i % 40) + 3 * i,
            cost_to_serve=f"{(i % 4) * 20}",
        )
        for i in range(60)
    ]
    events.append(profile_changed("seen-first", 2, spend="5000", purchases=9, **web))
    events.append(profile_changed("prospect", 1, **web))
    await application.score_profiles([ProfileChangeMessage(e) for e in events[:-2]], uow)
    await application.score_profiles([ProfileChangeMessage(e) for e in events[-2:]], uow)
    await application.sweep()

    assert {type(o.event) for o in uow.outbox} == {ScoresUpdatedEvent, TierChangedEvent}
    for written in uow.written:
        decoded = msgspec.json.decode(written.value)
        contract = ScoresUpdatedEvent if decoded["type"] == "scores.updated" else TierChangedEvent
        payload = ScoresUpdated if contract is ScoresUpdatedEvent else TierChanged
        assert set(decoded) == set(contract.model_fields)
        assert set(decoded["data"]) == set(payload.model_fields)
        for r in decoded["data"]["reasons"]:
            assert set(r) == {"code", "value", "detail"}
        # The contract reads back exactly what was written.
        model = contract.model_validate_json(written.value)
        assert msgspec.json.decode(model.model_dump_json()) == _as_floats(decoded)
    codes = {
        r.code
        for o in uow.outbox
        if isinstance(o.event, TierChangedEvent)
        for r in o.event.data.reasons
    }
    assert {"predicted_value", "probability_alive", "expected_purchases", "potential"} <= codes


def _as_floats(value: Any) -> Any:
    # Reason values are numbers or text; the contract reads integers as floats.
    if isinstance(value, dict):
        if set(value) == {"code", "value", "detail"} and isinstance(value["value"], int):
            return {**value, "value": float(value["value"])}
        return {k: _as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    return value


class _ScoresUpdatedV2(ScoresUpdatedEvent):
    SCHEMA_VERSION: ClassVar[int] = 2


@pytest.mark.parametrize("contract", [ScoresUpdatedEvent, TierChangedEvent, _ScoresUpdatedV2])
def test_the_envelope_takes_type_and_schema_version_from_the_contract(
    contract: type[ScoresUpdatedEvent] | type[TierChangedEvent],
) -> None:
    value = envelope(
        contract,
        "e-1",
        datetime(2025, 1, 1, tzinfo=UTC),
        correlation_id="c-1",
        causation_id="k-1",
        data=b"{}",
    )
    decoded = msgspec.json.decode(value)
    assert (decoded["type"], decoded["schema_version"]) == (
        contract.EVENT_TYPE,
        contract.SCHEMA_VERSION,
    )


async def test_the_kept_segment_reads_what_the_contract_reads(
    application: ScoringApplication, uow: Any, profile_changed: MakeProfile
) -> None:
    events = [
        profile_changed("transactional", 1, spend="20"),
        profile_changed(
            "relational", 1, spend="400", purchases=5, counts_by_channel={"web": 5, "app": 2}
        ),
        profile_changed("solutions", 1, spend="300", purchases=3, counts_by_kind={"phone_call": 4}),
        profile_changed("prospect", 1, touchpoint_count=2),
    ]
    await application.score_profiles([ProfileChangeMessage(e) for e in events], uow)
    states = {pid: r.state for pid, r in uow.scores.rows.items()}
    legacy = msgspec.json.encode({"segment": "relational", "reasons": []})

    for pid, state in states.items():
        model = ScoresUpdated.model_validate_json(state)
        rule = next(r for r in model.reasons if r.code == "segment_rule") if model.segment else None
        expected = (model.segment, rule.model_dump()) if rule is not None else None
        assert kept_segment(state) == expected, pid
    assert {s[0].value for s in map(kept_segment, states.values()) if s is not None} == {
        "transactional",
        "relational",
        "solutions_and_systems",
    }
    kept = kept_segment(legacy)
    assert kept is not None
    assert kept[1] == {"code": "segment_rule", "value": None, "detail": "kept from last change"}
