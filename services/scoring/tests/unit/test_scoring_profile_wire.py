"""The lean ProfileChanged decoder reads what the contract reads and refuses what it refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from clientela.scoring.adapters.inbound.profile_wire import decode_profile_change
from clientela.scoring.domain.facts import facts_of
from clientela.scoring.domain.potential import prospect_features
from clientela.scoring.domain.relationship import relationship_segment
from clientela.scoring.domain.value_model import scored_lifecycle
from clientela.shared.codec import DecodeError, decode_event, encode_event
from clientela.shared.contracts import ProfileChangedEvent

MakeProfile = Callable[..., ProfileChangedEvent]


def test_it_gives_the_domain_rules_what_the_contract_gives_them(
    profile_changed: MakeProfile,
) -> None:
    event = profile_changed(
        "p-1",
        3,
        spend="1234.5678",
        purchases=4,
        first_days_ago=300,
        correlation_id="corr-1",
        counts_by_channel={"web": 3, "branch": 2},
        counts_by_kind={"sale": 4, "branch_visit": 2},
        touchpoint_count=9,
        inbound_count=7,
        outbound_count=2,
        cost_to_serve="12.5",
    )
    lean = decode_profile_change(encode_event(event))

    assert lean is not None
    assert (lean.event_id, lean.correlation_id) == (event.event_id, "corr-1")
    full, wire = event.data, lean.data
    assert facts_of(wire) == facts_of(full)
    assert scored_lifecycle(wire) is scored_lifecycle(full)
    assert relationship_segment(wire) == relationship_segment(full)
    assert prospect_features(wire) == prospect_features(full)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("type",), "profile.merged"),
        (("schema_version",), 2),
        (("data", "version"), 0),
        (("data", "profile_id"), ""),
        (("data", "lifecycle"), "alien"),
        (("data", "created_at"), "2025-01-01T00:00:00"),
        (("data", "aggregates", "purchase_count"), -1),
        (("data", "aggregates", "total_spend"), "-5"),
        (("data", "aggregates", "last_purchase_at"), "yesterday"),
    ],
)
def test_what_the_contract_refuses_it_refuses_too(
    profile_changed: MakeProfile, path: tuple[str, ...], value: Any
) -> None:
    document = json.loads(encode_event(profile_changed("p-1", 1, spend="10")))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    raw = json.dumps(document).encode()

    with pytest.raises(DecodeError):
        decode_event(ProfileChangedEvent, raw)
    assert decode_profile_change(raw) is None


def test_garbage_and_oversized_records_are_left_to_the_contract_decoder() -> None:
    assert decode_profile_change(b"{not json") is None
    assert decode_profile_change(b"{}" + b" " * 100, max_bytes=50) is None
