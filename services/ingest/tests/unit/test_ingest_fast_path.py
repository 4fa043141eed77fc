"""The msgspec fast path never accepts what the pydantic contract refuses, and agrees with it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from clientela.ingest.domain import native_schema as ns
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.touchpoints import (
    IntakeContext,
    RecordedTouchpoint,
    SubmittedEvent,
    _contract_path,
    _fast_path,
)
from clientela.shared.contracts import Touchpoint, TouchpointRecorded, touchpoint

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CONTEXT = IntakeContext("src", NOW, 1)
POLICY = IntakePolicy()

BASES: dict[str, dict[str, Any]] = {
    "sale": {
        "event_id": "e-1",
        "kind": "sale",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"email": " A@B.com", "customer_id": "c-1"},
        "sale": {
            "order_id": "o-1",
            "amount": "120.50",
            "currency": "eur",
            "items": [{"sku": "s", "quantity": 2, "unit_price": "60.25"}],
        },
        "cost": {"amount": 1.5, "currency": "EUR"},
        "traits": {"plan": "gold", "logins": 3, "score": 0.5, "vip": True, "x": None},
        "agent": {"agent_id": "rep-1", "role": "sales_rep"},
        "consent": [{"channel": "email", "status": "opted_in"}],
        "occurred_at": "2025-03-01T09:30:00+01:00",
    },
    "call": {
        "kind": "phone_call",
        "channel": "phone",
        "direction": "outbound",
        "identifiers": {"phone": "+1 202 555 0143", "extra": {"crm": "9"}},
        "call": {"duration_seconds": 60, "outcome": "voicemail", "reason": "billing"},
        "note": "called back",
    },
    "visit": {
        "kind": "web_visit",
        "channel": "web",
        "direction": "inbound",
        "identifiers": {"anonymous_id": "a-1"},
        "web_visit": {"url": "https://Example.com", "referrer": "https://g.co/x", "page_views": 2},
        "properties": {"campaign": "spring"},
    },
    "email": {
        "kind": "email",
        "channel": "email",
        "direction": "outbound",
        "identifiers": {"device_id": "d-1"},
        "email": {"opened": True, "subject": "Hi"},
    },
    "branch": {
        "kind": "branch_visit",
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"extra": {"loyalty": "L-1", "branch_card": "B-1"}},
        "branch_visit": {"branch_id": "br", "duration_seconds": 10},
    },
    "chat": {
        "kind": "chat",
        "channel": "chat",
        "direction": "inbound",
        "identifiers": {"customer_id": "c"},
    },
}

# (base, dotted path, value); the value None with DELETE removes the field.
DELETE = object()
MUTATIONS: list[tuple[str, str, Any]] = [
    ("sale", "sale.amount", "-1"),
    ("sale", "sale.amount", "NaN"),
    ("sale", "sale.amount", "Infinity"),
    ("sale", "sale.amount", "1.23456"),
    ("sale", "sale.amount", "1.23450000"),
    ("sale", "sale.amount", "1e3"),
    ("sale", "sale.amount", "123456789012345"),
    ("sale", "sale.amount", 12.5),
    ("sale", "sale.amount", True),
    ("sale", "sale.currency", "xyz"),
    ("sale", "sale.currency", " eur"),
    ("sale", "sale.currency", "EURO"),
    ("sale", "sale.items.0.quantity", 0),
    ("sale", "sale.items.0.quantity", "0.00001"),
    ("sale", "sale.items.0.unit_price", "-0.01"),
    ("sale", "sale.items.0.sku", ""),
    ("sale", "sale.order_id", 5),
    ("sale", "cost.currency", "usd"),
    ("sale", "cost.currency", "ZZZ"),
    ("sale", "identifiers", {}),
    ("sale", "identifiers.email", "   "),
    ("sale", "identifiers.email", "x" * 321),
    ("sale", "identifiers.customer_id", 7),
    ("sale", "occurred_at", "2025-03-01T09:30:00"),
    ("sale", "occurred_at", "2099-01-01T00:00:00Z"),
    ("sale", "occurred_at", 1740787200),
    ("sale", "event_id", ""),
    ("sale", "event_id", "x" * 129),
    ("sale", "source", "s" * 257),
    ("sale", "traits", {"nested": {"a": 1}}),
    ("sale", "traits", {"": 1}),
    ("sale", "traits", {f"k{i}": i for i in range(201)}),
    ("sale", "consent", [{"channel": "fax", "status": "opted_in"}]),
    ("sale", "call", {"duration_seconds": 1, "outcome": "busy"}),
    ("sale", "kind", "phone_call"),
    ("sale", "kind", "teleport"),
    ("sale", "direction", "sideways"),
    ("sale", "agent", {"role": "x"}),
    ("call", "identifiers.phone", "call me"),
    ("call", "identifiers.phone", "(202) 555-0143"),
    ("call", "identifiers.phone", "+1 202 555"),
    ("call", "call.duration_seconds", -1),
    ("call", "call.duration_seconds", 86_401),
    ("call", "call.duration_seconds", "60"),
    ("call", "call.duration_seconds", 60.0),
    ("call", "call.outcome", "hung up"),
    ("call", "identifiers.extra", {"": "x"}),
    ("call", "note", "n" * 4097),
    ("visit", "web_visit.url", "not a url"),
    ("visit", "web_visit.url", "https://ex ample.com"),
    ("visit", "web_visit.referrer", ""),
    ("visit", "web_visit.page_views", 0),
    ("visit", "web_visit", DELETE),
    ("visit", "properties", {"list": [1, 2]}),
    ("email", "email.opened", "yes"),
    ("email", "email.opened", 1),
    ("email", "email.subject", ""),
    ("branch", "branch_visit.branch_id", DELETE),
    ("branch", "identifiers.extra", {}),
    ("chat", "sale", {"order_id": "o", "amount": "1", "currency": "EUR"}),
    ("chat", "channel", "pigeon"),
]


def mutated(base: str, path: str, value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(BASES[base])
    *parents, last = path.split(".")
    target: Any = payload
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return payload


def both_paths(payload: dict[str, Any]) -> tuple[RecordedTouchpoint | None, Any]:
    raw = json.dumps(payload).encode()
    by_bytes = _fast_path(SubmittedEvent(None, len(raw), raw), CONTEXT, POLICY)
    by_dict = _fast_path(SubmittedEvent(json.loads(raw), len(raw)), CONTEXT, POLICY)
    assert (by_bytes is None) == (by_dict is None)
    slow = _contract_path(SubmittedEvent(json.loads(raw), len(raw)), CONTEXT, POLICY)
    return by_bytes, slow


def same_event(fast: RecordedTouchpoint, slow: RecordedTouchpoint) -> None:
    a, b = fast.event(), slow.event()
    assert a.data == b.data
    assert (a.occurred_at, a.source) == (b.occurred_at, b.source)
    assert fast.key == slow.key
    assert fast.refers_to_message == slow.refers_to_message
    # The fast encoding must read back as the very event the contract path builds.
    assert TouchpointRecorded.model_validate_json(fast.value).data == b.data


@pytest.mark.parametrize("base", sorted(BASES))
def test_valid_events_take_the_fast_path_and_match_the_contract(base: str) -> None:
    fast, slow = both_paths(BASES[base])
    assert fast is not None, "a valid event fell back to the slow path"
    assert isinstance(slow, RecordedTouchpoint)
    same_event(fast, slow)


@pytest.mark.parametrize(("base", "path", "value"), MUTATIONS)
def test_fast_path_is_never_more_lenient_than_the_contract(
    base: str, path: str, value: Any
) -> None:
    fast, slow = both_paths(mutated(base, path, value))
    if fast is not None:
        assert isinstance(slow, RecordedTouchpoint), f"fast path accepted what {slow} refuses"
        same_event(fast, slow)


@pytest.mark.parametrize(
    ("base", "path", "value", "names_a_message"),
    [
        ("email", "email.campaign_message_id", "m-1", True),
        ("email", "email.campaign_message_id", None, False),
        ("email", "email.subject", "no reference", False),
        ("visit", "properties.campaign_message_id", "m-2", True),
        ("visit", "properties.campaign_message_id", "", False),
        ("visit", "properties.campaign_message_id", 7, False),
        ("visit", "properties.campaign", "spring", False),
        ("chat", "properties", {"campaign_message_id": "m-3"}, True),
    ],
)
def test_both_paths_tell_whether_a_touchpoint_names_a_campaign_message(
    base: str, path: str, value: Any, names_a_message: bool
) -> None:
    fast, slow = both_paths(mutated(base, path, value))
    assert fast is not None
    assert isinstance(slow, RecordedTouchpoint)
    assert (fast.refers_to_message, slow.refers_to_message) == (names_a_message, names_a_message)


def _fields(model: Any) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize(
    ("contract", "mirror"),
    [
        (Touchpoint, ns.TouchpointS),
        (touchpoint.Identifiers, ns.IdentifiersS),
        (touchpoint.Agent, ns.AgentS),
        (touchpoint.ConsentChange, ns.ConsentChangeS),
        (touchpoint.LineItem, ns.LineItemS),
        (touchpoint.SaleDetails, ns.SaleDetailsS),
        (touchpoint.PhoneCallDetails, ns.PhoneCallDetailsS),
        (touchpoint.EmailDetails, ns.EmailDetailsS),
        (touchpoint.WebVisitDetails, ns.WebVisitDetailsS),
        (touchpoint.BranchVisitDetails, ns.BranchVisitDetailsS),
        (TouchpointRecorded, ns.TouchpointRecordedS),
    ],
)
def test_mirror_has_exactly_the_contract_fields(contract: Any, mirror: Any) -> None:
    # A field added to the contract must be added to the mirror, or it would be dropped.
    assert _fields(contract) == set(mirror.__struct_fields__)


@pytest.mark.parametrize("as_bytes", [True, False])
def test_envelope_fields_read_in_the_same_pass_stay_out_of_the_data(as_bytes: bool) -> None:
    payload = {
        **BASES["visit"],
        "event_id": "e-9",
        "occurred_at": "2025-03-01T09:30:00+01:00",
        "sent_at": "2025-03-01T09:31:00+01:00",
        "source": "pos-7",
        "correlation_id": "chain-1",
    }
    raw = json.dumps(payload).encode()
    submitted = SubmittedEvent(None, len(raw), raw) if as_bytes else SubmittedEvent(payload, 1)
    fast = _fast_path(submitted, CONTEXT, POLICY)
    assert fast is not None
    value = json.loads(fast.value)
    assert set(value["data"]) == set(ns.TouchpointS.__struct_fields__)
    assert (value["event_id"], value["source"], value["correlation_id"]) == (
        "e-9",
        "pos-7",
        "chain-1",
    )
    # Skew-corrected: sent a minute after it happened, by a clock 2h29m behind ours.
    assert value["occurred_at"] == "2025-03-01T11:59:00Z"
