"""Turning native touchpoints into TouchpointRecorded events; the native body format."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from clientela.ingest.domain.identity import identity_key
from clientela.ingest.domain.native_format import MalformedBodyError, unpack_native
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.touchpoints import (
    IntakeContext,
    RecordedTouchpoint,
    Rejection,
    SubmittedEvent,
    record_touchpoint,
)
from clientela.shared.contracts import Identifiers, TouchpointRecorded

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CONTEXT = IntakeContext(default_source="pos-key", received_at=NOW, accepted_at_ms=1)
POLICY = IntakePolicy()


def sale(**overrides: Any) -> dict[str, Any]:
    """Return a valid native sale touchpoint."""
    payload: dict[str, Any] = {
        "kind": "sale",
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"email": " Ada@Example.com ", "phone": "(202) 555-0143"},
        "sale": {"order_id": "o-1", "amount": "19.99", "currency": "usd"},
    }
    payload.update(overrides)
    return payload


def record(payload: object, policy: IntakePolicy = POLICY) -> TouchpointRecorded | Rejection:
    """Record through the dict path and the raw-bytes path; both must agree."""
    raw = json.dumps(payload).encode()
    by_dict = record_touchpoint(SubmittedEvent(payload, len(raw)), CONTEXT, policy)
    by_raw = record_touchpoint(SubmittedEvent(None, len(raw), raw), CONTEXT, policy)
    if isinstance(by_dict, Rejection):
        assert isinstance(by_raw, Rejection)
        assert by_raw.errors == by_dict.errors
        return by_dict
    assert isinstance(by_raw, RecordedTouchpoint)
    event, again = by_dict.event(), by_raw.event()
    assert (by_dict.key, event.data) == (by_raw.key, again.data)
    return event


def errors_of(result: TouchpointRecorded | Rejection) -> dict[str, str]:
    assert isinstance(result, Rejection)
    return {e.path: e.reason for e in result.errors}


def test_valid_sale_gets_defaults_and_normalised_fields() -> None:
    event = record(sale())
    assert isinstance(event, TouchpointRecorded)
    assert event.source == "pos-key"
    assert event.occurred_at == NOW
    assert event.correlation_id == event.event_id
    assert event.data.identifiers.email == "ada@example.com"
    assert event.data.identifiers.phone == "+12025550143"
    assert event.data.sale is not None
    assert event.data.sale.currency == "USD"
    assert event.data.sale.amount == Decimal("19.99")


def test_given_envelope_fields_are_kept_and_time_converted_to_utc() -> None:
    event = record(
        sale(
            event_id="e-1",
            occurred_at="2025-03-01T10:00:00+02:00",
            source="till-7",
            correlation_id="c-1",
        )
    )
    assert isinstance(event, TouchpointRecorded)
    assert (event.event_id, event.source, event.correlation_id) == ("e-1", "till-7", "c-1")
    assert event.occurred_at == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_field_errors_carry_paths_and_reasons() -> None:
    result = record(sale(event_id="e-2", sale={"order_id": "o", "amount": -1, "currency": "USD"}))
    assert isinstance(result, Rejection)
    assert result.event_id == "e-2"
    assert errors_of(result) == {"sale.amount": "Input should be greater than or equal to 0"}


def test_every_problem_is_reported_at_once() -> None:
    errors = errors_of(
        record(
            sale(
                channel="pigeon",
                identifiers={"phone": "call me"},
                occurred_at="yesterday",
            )
        )
    )
    assert set(errors) == {"identifiers.phone", "channel", "occurred_at"}


def test_unknown_currency_and_missing_identifiers_are_rejected() -> None:
    errors = errors_of(
        record(sale(identifiers={}, sale={"order_id": "o", "amount": 1, "currency": "xyz"}))
    )
    assert "identifiers" in errors
    assert "ISO 4217" in errors["sale"]


def test_naive_occurred_at_is_rejected() -> None:
    assert "occurred_at" in errors_of(record(sale(occurred_at="2025-03-01T10:00:00")))


def test_future_beyond_skew_is_rejected_within_skew_accepted() -> None:
    near = (NOW + timedelta(seconds=299)).isoformat()
    far = (NOW + timedelta(seconds=301)).isoformat()
    assert isinstance(record(sale(occurred_at=near)), TouchpointRecorded)
    assert errors_of(record(sale(occurred_at=far))) == {
        "occurred_at": "is more than 300 s in the future"
    }


def test_oversized_event_is_rejected() -> None:
    errors = errors_of(record(sale(note="x" * 300), IntakePolicy(max_event_bytes=256)))
    assert list(errors) == ["$"]
    assert "exceeds 256 bytes" in errors["$"]


def test_non_object_event_is_rejected() -> None:
    assert errors_of(record(["not", "an", "object"])) == {"$": "an event must be a JSON object"}


def test_identity_key_hashes_the_strongest_identifier() -> None:
    ids = Identifiers(email="ada@example.com", customer_id="c-42", device_id="d")
    expected = hashlib.sha256(b"customer_id:c-42").hexdigest()[:32]
    assert identity_key(ids) == expected
    assert (
        identity_key(Identifiers(email="ada@example.com"))
        == (hashlib.sha256(b"email:ada@example.com").hexdigest()[:32])
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind": "sale"}',
        b'[{"kind": "sale"}]',
        b'{"batch": [{"kind": "sale"}]}',
    ],
)
def test_native_body_shapes(body: bytes) -> None:
    events = unpack_native(body)
    assert [e.decoded() for e in events] == [{"kind": "sale"}]
    assert events[0].size_bytes == len(b'{"kind": "sale"}')


def test_oversized_items_are_measured_compactly() -> None:
    (event,) = unpack_native(b'[{"kind":      "sale"}]', max_event_bytes=16)
    assert event.size_bytes == len(b'{"kind":"sale"}')


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe\x00", "body is not"),
        (b"[NaN]", "body is not valid JSON"),
        (b"42", "body must be a touchpoint object"),
        (b'{"batch": {}}', "'batch' must be a JSON array"),
        (b"[]", "body holds no events"),
    ],
)
def test_malformed_bodies_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedBodyError, match=reason):
        unpack_native(body)
