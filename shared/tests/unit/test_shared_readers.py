"""The fast touchpoint reader accepts exactly what the contract accepts, with the same values."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientela.platform.population import Population, PopulationSpec
from clientela.shared.codec import DecodeError, decode_event
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.readers import Reader
from clientela.shared.readers.touchpoint import (
    TOUCHPOINTS,
    TouchpointRecordedView,
    encode_touchpoint,
    touchpoint_builtins,
    touchpoint_view,
)

START = datetime(2025, 1, 1, tzinfo=UTC)


def _envelope(data: dict[str, Any], n: int) -> dict[str, Any]:
    body = dict(data)
    event_id = body.pop("event_id", f"e-{n}")
    occurred_at = body.pop("occurred_at", START.isoformat())
    return {
        "event_id": event_id,
        "type": "touchpoint.recorded",
        "schema_version": 1,
        "occurred_at": occurred_at,
        "source": "ingest",
        "data": body,
    }


POPULATION = [
    _envelope(t, n)
    for n, t in enumerate(Population(PopulationSpec(people=150, seed=3)).touchpoints(400, START))
]


def _outcome(value: bytes | None, read: Any) -> tuple[str, Any]:
    try:
        return "ok", read(value)
    except DecodeError as exc:
        return "dead", (exc.code, exc.reason, [(e.path, e.reason) for e in exc.errors])


def _by_contract(value: bytes | None) -> TouchpointRecordedView:
    return touchpoint_view(decode_event(TouchpointRecorded, value))


def assert_agree(value: bytes | None) -> tuple[str, Any]:
    """Assert the reader and the contract give the same view or the same dead-letter reason."""
    fast = _outcome(value, TOUCHPOINTS.read)
    slow = _outcome(value, _by_contract)
    assert fast == slow, value
    return fast


def test_the_reader_is_a_reader() -> None:
    reader: Reader[TouchpointRecordedView] = TOUCHPOINTS
    assert reader.read(json.dumps(POPULATION[0]).encode()).event_id == POPULATION[0]["event_id"]


def test_population_touchpoints_read_fast_and_as_the_contract_reads_them() -> None:
    kinds = set()
    for event in POPULATION:
        raw = json.dumps(event).encode()
        status, view = assert_agree(raw)
        assert status == "ok"
        kinds.add(view.data.kind.value)
        # The fast path itself accepted it: no trip through the contract.
        assert TOUCHPOINTS._sure(TOUCHPOINTS._decoder.decode(raw), raw)
    assert kinds >= {"sale", "web_visit", "email", "phone_call", "branch_visit", "app_session"}


def test_an_encoded_view_reads_back_to_itself() -> None:
    for event in (SALE, WEB, CALL, EMAIL):
        view = TOUCHPOINTS.read(json.dumps(event).encode())
        assert TOUCHPOINTS.read(encode_touchpoint(view)) == view
        assert TOUCHPOINTS.read(json.dumps(touchpoint_builtins(view)).encode()) == view


def test_contract_encoded_touchpoints_read_alike() -> None:
    for event in POPULATION[:100]:
        model = TouchpointRecorded.model_validate(event)
        status, view = assert_agree(model.model_dump_json().encode())
        assert status == "ok"
        assert view.event_id == model.event_id


def _set(event: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    target = changed
    for part in path[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            return changed
    target[path[-1]] = value
    return changed


def _drop(event: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    target = changed
    for part in path[:-1]:
        target = target.get(part, {})
    target.pop(path[-1], None)
    return changed


SALE = next(e for e in POPULATION if e["data"]["kind"] == "sale")
WEB = next(e for e in POPULATION if e["data"]["kind"] == "web_visit")
CALL = next(e for e in POPULATION if e["data"]["kind"] == "phone_call")
EMAIL = next(e for e in POPULATION if e["data"]["kind"] == "email")

BAD: dict[str, bytes | None] = {
    "no value": None,
    "not JSON": b"{not json",
    "not UTF-8": b'{"event_id": "\xff"}',
    "a JSON array": b"[1, 2]",
    "a JSON string": b'"touchpoint"',
    "empty object": b"{}",
    "oversize": json.dumps(_set(WEB, ("data", "note"), "x" * 1_100_000)).encode(),
    "wrong type": json.dumps(_set(WEB, ("type",), "profile.changed")).encode(),
    "newer schema": json.dumps(_set(WEB, ("schema_version",), 2)).encode(),
    "schema zero": json.dumps(_set(WEB, ("schema_version",), 0)).encode(),
    "no source": json.dumps(_drop(WEB, ("source",))).encode(),
    "empty event id": json.dumps(_set(WEB, ("event_id",), "")).encode(),
    "long event id": json.dumps(_set(WEB, ("event_id",), "e" * 129)).encode(),
    "naive time": json.dumps(_set(WEB, ("occurred_at",), "2025-01-01T10:00:00")).encode(),
    "no data": json.dumps(_drop(WEB, ("data",))).encode(),
    "unknown kind": json.dumps(_set(WEB, ("data", "kind"), "fax")).encode(),
    "unknown channel": json.dumps(_set(WEB, ("data", "channel"), "pigeon")).encode(),
    "no identifiers": json.dumps(_set(WEB, ("data", "identifiers"), {})).encode(),
    "only null identifiers": json.dumps(
        _set(WEB, ("data", "identifiers"), {"email": None, "extra": {}})
    ).encode(),
    "empty identifier": json.dumps(_set(WEB, ("data", "identifiers"), {"email": ""})).encode(),
    "sale without details": json.dumps(_drop(SALE, ("data", "sale"))).encode(),
    "call without details": json.dumps(_drop(CALL, ("data", "call"))).encode(),
    "web visit without details": json.dumps(_drop(WEB, ("data", "web_visit"))).encode(),
    "details of another kind": json.dumps(
        _set(EMAIL, ("data", "branch_visit"), {"branch_id": "b1"})
    ).encode(),
    "sale details on a visit": json.dumps(
        _set(WEB, ("data", "sale"), SALE["data"]["sale"])
    ).encode(),
    "unknown currency": json.dumps(_set(SALE, ("data", "sale", "currency"), "XYZ")).encode(),
    "negative amount": json.dumps(_set(SALE, ("data", "sale", "amount"), "-1")).encode(),
    "five decimal places": json.dumps(_set(SALE, ("data", "sale", "amount"), "1.00001")).encode(),
    "nineteen digits": json.dumps(_set(SALE, ("data", "sale", "amount"), "1" * 19)).encode(),
    "not a number": json.dumps(_set(SALE, ("data", "sale", "amount"), "NaN")).encode(),
    "zero quantity": json.dumps(
        _set(SALE, ("data", "sale", "items"), [{"sku": "s", "quantity": 0}])
    ).encode(),
    "cost in no currency": json.dumps(
        _set(WEB, ("data", "cost"), {"amount": "1", "currency": "ABC"})
    ).encode(),
    "call too long": json.dumps(
        _set(CALL, ("data", "call"), {"duration_seconds": 86_401, "outcome": "answered"})
    ).encode(),
    "unknown outcome": json.dumps(
        _set(CALL, ("data", "call"), {"duration_seconds": 1, "outcome": "exploded"})
    ).encode(),
    "no page views": json.dumps(_set(WEB, ("data", "web_visit"), {"page_views": 0})).encode(),
    "bad url": json.dumps(_set(WEB, ("data", "web_visit"), {"url": "not a url"})).encode(),
    "too many traits": json.dumps(
        _set(WEB, ("data", "traits"), {f"t{i}": i for i in range(201)})
    ).encode(),
    "nested trait": json.dumps(_set(WEB, ("data", "traits"), {"t": [1]})).encode(),
    "too many consents": json.dumps(
        _set(WEB, ("data", "consent"), [{"channel": "email", "status": "opted_in"}] * 21)
    ).encode(),
    "long note": json.dumps(_set(WEB, ("data", "note"), "n" * 4097)).encode(),
    "null list": json.dumps(_set(WEB, ("data", "consent"), None)).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_records_are_refused_with_the_contracts_reason(name: str) -> None:
    status, reason = assert_agree(BAD[name])
    assert status == "dead", name
    assert reason[0] in {
        "empty",
        "oversized",
        "undecodable",
        "invalid",
        "unexpected_type",
        "unsupported_version",
    }


EDGE: dict[str, bytes] = {
    "7 fraction digits": json.dumps(
        _set(WEB, ("occurred_at",), "2025-01-01T10:00:00.9999999Z")
    ).encode(),
    "offset without colon": json.dumps(
        _set(WEB, ("occurred_at",), "2025-01-01T10:00:00+0130")
    ).encode(),
    "lowercase separators": json.dumps(
        _set(WEB, ("occurred_at",), "2025-01-01t10:00:00z")
    ).encode(),
    "unix time": json.dumps(_set(WEB, ("occurred_at",), 1_735_725_600)).encode(),
    "schema as text": json.dumps(_set(WEB, ("schema_version",), "1")).encode(),
    "no type": json.dumps(_drop(WEB, ("type",))).encode(),
    "amount as number": json.dumps(_set(SALE, ("data", "sale", "amount"), 12.5)).encode(),
    "amount with trailing zeros": json.dumps(
        _set(SALE, ("data", "sale", "amount"), "12.50000")
    ).encode(),
    "integral float amount": b'{"event_id":"x","source":"s","occurred_at":"2025-01-01T00:00:00Z",'
    b'"data":{"kind":"sale","channel":"web","direction":"inbound","identifiers":{"email":"a@b"},'
    b'"sale":{"order_id":"o","amount":1.0000,"currency":"EUR"}}}',
    "exponent amount": json.dumps(_set(SALE, ("data", "sale", "amount"), "1E+3")).encode(),
    "url normalised": json.dumps(
        _set(WEB, ("data", "web_visit"), {"url": "https://Example.com"})
    ).encode(),
    "duplicate key": b'{"event_id":"a","event_id":"b","source":"s",'
    b'"occurred_at":"2025-01-01T00:00:00Z","data":{"kind":"chat","channel":"chat",'
    b'"direction":"inbound","identifiers":{"email":"a@b"}}}',
    "unknown fields": json.dumps(_set(WEB, ("data", "future_field"), {"x": 1})).encode(),
    "text for a count": json.dumps(_set(WEB, ("data", "web_visit"), {"page_views": "3"})).encode(),
    "big integer trait": json.dumps(_set(WEB, ("data", "traits"), {"n": 10**30})).encode(),
    "lone surrogate": json.dumps(_set(WEB, ("data", "note"), "\ud800")).encode(),
    "extra identifiers only": json.dumps(
        _set(WEB, ("data", "identifiers"), {"extra": {"loyalty": "L1"}})
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(EDGE))
def test_edge_records_read_as_the_contract_reads_them(name: str) -> None:
    status, _ = assert_agree(EDGE[name])
    assert status in {"ok", "dead"}


def test_a_record_without_id_or_time_gets_them_from_the_contract() -> None:
    view = TOUCHPOINTS.read(json.dumps(_drop(_drop(WEB, ("event_id",)), ("occurred_at",))).encode())
    assert view.event_id
    assert view.occurred_at.tzinfo is not None
    assert view.data == TOUCHPOINTS.read(json.dumps(WEB).encode()).data


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["", "EUR", "12.5", "-0", "1.2345", "0", "web", "sale", "answered"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
PATHS = [
    ("event_id",),
    ("occurred_at",),
    ("source",),
    ("schema_version",),
    ("correlation_id",),
    ("data", "kind"),
    ("data", "channel"),
    ("data", "direction"),
    ("data", "identifiers"),
    ("data", "identifiers", "email"),
    ("data", "identifiers", "extra"),
    ("data", "agent"),
    ("data", "cost"),
    ("data", "cost", "amount"),
    ("data", "traits"),
    ("data", "consent"),
    ("data", "sale", "amount"),
    ("data", "sale", "currency"),
    ("data", "sale", "items"),
    ("data", "web_visit", "page_views"),
    ("data", "web_visit", "url"),
    ("data", "call", "duration_seconds"),
    ("data", "email", "opened"),
    ("data", "properties"),
    ("data", "note"),
]
AMOUNTS = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(str),
    st.decimals(min_value=0, max_value=10**16, places=4).map(str),
    st.floats(min_value=0, max_value=1e16, allow_nan=False),
    st.integers(min_value=-5, max_value=10**20),
)
TIMES = st.builds(
    lambda moment, digits, zone: (
        moment.strftime("%Y-%m-%dT%H:%M:%S")
        + (("." + str(moment.microsecond).rjust(6, "0") + "123")[: digits + 1] if digits else "")
        + zone
    ),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)),
    st.integers(min_value=0, max_value=9),
    st.sampled_from(["Z", "z", "+00:00", "-05:30", "+0100", "", "+01", " UTC"]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(POPULATION),
    path=st.sampled_from(PATHS),
    value=JSON_VALUES,
)
def test_generated_mutations_read_as_the_contract_reads_them(
    base: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    assert_agree(json.dumps(_set(base, path, value)).encode())


@settings(max_examples=300, deadline=None)
@given(amount=AMOUNTS, where=st.sampled_from(["sale", "price", "quantity", "cost"]))
def test_generated_amounts_read_as_the_contract_reads_them(amount: Any, where: str) -> None:
    if where == "cost":
        event = _set(WEB, ("data", "cost"), {"amount": amount, "currency": "EUR"})
    elif where == "sale":
        event = _set(SALE, ("data", "sale", "amount"), amount)
    else:
        field = "unit_price" if where == "price" else "quantity"
        event = _set(SALE, ("data", "sale", "items"), [{"sku": "s", field: amount}])
    assert_agree(json.dumps(event).encode())


@settings(max_examples=300, deadline=None)
@given(moment=TIMES)
def test_generated_times_read_as_the_contract_reads_them(moment: str) -> None:
    assert_agree(json.dumps(_set(WEB, ("occurred_at",), moment)).encode())
