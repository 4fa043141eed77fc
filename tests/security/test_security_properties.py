"""Property tests: ingest's parsers and normalisers, and profile's identifier normalisation.

Whatever a client sends, the pure domain functions answer with a result or a rejection, or
raise only the errors the HTTP layer turns into a 400; never anything else (which would be a
500). What they accept is a valid contract, and normalisation is idempotent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import hypothesis.strategies as st
import msgspec
from hypothesis import HealthCheck, given, settings

from clientela.ingest.domain import cloudevents
from clientela.ingest.domain.native_format import MalformedBodyError, compact_size, unpack_native
from clientela.ingest.domain.normalisation import (
    InvalidPhoneError,
    normalise_currency,
    normalise_email,
    normalise_phone,
    normalise_touchpoint_fields,
)
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.raw_record import RawRecord, translate_record
from clientela.ingest.domain.segment import (
    SEGMENT_TYPES,
    MalformedSegmentError,
    SegmentMapping,
    message_items,
    translate_message,
    unpack_segment,
)
from clientela.ingest.domain.touchpoints import (
    IntakeContext,
    RecordedTouchpoint,
    Rejection,
    SubmittedEvent,
    record_touchpoint,
)
from clientela.profile.domain.identity import IdentityRules
from clientela.shared.contracts import Identifiers, TouchpointRecorded

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
POLICY = IntakePolicy()
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CONTEXT = IntakeContext(default_source="property-test", received_at=NOW, accepted_at_ms=0)

# Any JSON document, with the awkward corners: deep nesting, odd numbers, unicode.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
texts = st.text(max_size=60) | st.sampled_from(
    [
        "",
        " ",
        "+",
        "+1",
        "++44",
        "00",
        "\uff21\uff22\uff23@\u4f8b\u3048.jp",
        "\x00",
        "a" * 400,
        "+12025550123",
        "tel:+1",
    ]
)


def _valid_touchpoint() -> dict[str, Any]:
    return {
        "event_id": "prop-1",
        "occurred_at": "2026-11-22T11:00:00+00:00",
        "kind": "sale",
        "channel": "branch",
        "direction": "inbound",
        "identifiers": {"customer_id": "C-1", "email": "A@B.example", "phone": "2025550123"},
        "traits": {"first_name": "Ada"},
        "sale": {"order_id": "O-1", "amount": "12.50", "currency": "eur"},
    }


# A valid touchpoint with some fields replaced by anything: reaches deep into validation.
near_touchpoints = st.builds(
    lambda base, changes, drops: {
        **{k: v for k, v in base.items() if k not in drops},
        **changes,
    },
    st.just(_valid_touchpoint()),
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "occurred_at",
                "kind",
                "channel",
                "direction",
                "identifiers",
                "traits",
                "sale",
                "consent",
                "cost",
                "properties",
                "note",
                "web_visit",
                "source",
                "sent_at",
            ]
        ),
        json_values | texts,
        max_size=3,
    ),
    st.sets(st.sampled_from(["kind", "channel", "identifiers", "sale", "occurred_at"]), max_size=2),
)
near_identifiers = st.fixed_dictionaries(
    {},
    optional={
        "customer_id": texts,
        "email": texts,
        "phone": texts,
        "device_id": texts,
        "anonymous_id": texts,
        "extra": st.dictionaries(texts, texts, max_size=3),
    },
)


def _check_outcome(outcome: object) -> None:
    assert isinstance(outcome, RecordedTouchpoint | Rejection), outcome
    if isinstance(outcome, RecordedTouchpoint):
        event = TouchpointRecorded.model_validate_json(outcome.value)  # accepted => valid
        email = event.data.identifiers.email
        assert email is None or email == email.strip().lower()


@EXAMPLES
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_security_native_body_parser_never_raises_unexpectedly(body: bytes) -> None:
    try:
        submitted = unpack_native(body, POLICY.max_event_bytes)
    except MalformedBodyError:
        return
    for item in submitted:
        _check_outcome(record_touchpoint(item, CONTEXT, POLICY))


@EXAMPLES
@given(st.lists(near_touchpoints, min_size=1, max_size=3))
def test_security_near_valid_touchpoints_are_accepted_or_rejected(events: list[Any]) -> None:
    body = json.dumps(events).encode()
    for item in unpack_native(body, POLICY.max_event_bytes):
        _check_outcome(record_touchpoint(item, CONTEXT, POLICY))
    for event in events:
        # The slow path (decoded payload, not raw bytes) must agree on what it refuses.
        _check_outcome(
            record_touchpoint(SubmittedEvent(event, compact_size(event)), CONTEXT, POLICY)
        )


@EXAMPLES
@given(near_touchpoints)
def test_security_touchpoint_field_normalisation_never_raises(payload: dict[str, Any]) -> None:
    out, errors = normalise_touchpoint_fields(payload, "US")
    assert isinstance(out, dict)
    assert isinstance(errors, list)


@EXAMPLES
@given(texts)
def test_security_email_and_currency_normalisation_is_idempotent(value: str) -> None:
    assert normalise_email(normalise_email(value)) == normalise_email(value)
    assert normalise_currency(normalise_currency(value)) == normalise_currency(value)


@EXAMPLES
@given(
    texts | st.from_regex(r"\+?[0-9 ()\-.]{0,20}", fullmatch=True),
    st.sampled_from(["US", "GB", "DE", "IN"]),
)
def test_security_phone_normalisation_is_e164_and_idempotent(value: str, region: str) -> None:
    try:
        e164 = normalise_phone(value, region)
    except InvalidPhoneError:
        return
    assert e164.startswith("+")
    assert e164[1:].isdigit()
    assert normalise_phone(e164, region) == e164


@EXAMPLES
@given(
    json_values
    | near_touchpoints.map(
        lambda d: {"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data": d}
    )
)
def test_security_structured_cloudevents_never_raise(document: object) -> None:
    outcome = cloudevents.from_structured(document, compact_size(document))
    assert isinstance(outcome, SubmittedEvent | Rejection)


@EXAMPLES
@given(
    st.dictionaries(
        st.sampled_from(["specversion", "id", "source", "type", "time", "subject", "dataschema"]),
        texts,
        max_size=7,
    ),
    st.none() | texts,
    st.binary(max_size=200),
)
def test_security_binary_cloudevents_never_raise(
    attributes: dict[str, str], content_type: str | None, data: bytes
) -> None:
    outcome = cloudevents.from_binary(attributes, content_type, data)
    assert isinstance(outcome, SubmittedEvent | Rejection)


@EXAMPLES
@given(
    st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=20)), max_size=4),
)
def test_security_raw_topic_records_never_raise(
    value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    record = RawRecord("raw", 0, 7, 1_700_000_000_000, b"k", value, headers)
    outcome = translate_record(record, POLICY.max_event_bytes)
    assert isinstance(outcome, SubmittedEvent | Rejection)


@EXAMPLES
@given(
    json_values
    | st.fixed_dictionaries(
        {
            "batch": st.lists(
                json_values
                | st.fixed_dictionaries(
                    {
                        "type": st.sampled_from(sorted(SEGMENT_TYPES)),
                        "userId": json_values,
                        "properties": json_values,
                        "context": json_values,
                        "timestamp": json_values,
                    }
                ),
                max_size=3,
            )
        }
    ),
    st.sampled_from([*sorted(SEGMENT_TYPES), "batch"]),
)
def test_security_segment_bodies_never_raise_unexpectedly(document: object, endpoint: Any) -> None:
    items = message_items(document, endpoint)
    sizes = [compact_size(item) for item in items]
    try:
        unpack_segment(document, endpoint, NOW, SegmentMapping(), sizes)
    except MalformedSegmentError:
        return


@EXAMPLES
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "type",
                "event",
                "userId",
                "anonymousId",
                "messageId",
                "properties",
                "traits",
                "context",
                "timestamp",
                "sentAt",
                "integrations",
                "name",
            ]
        ),
        json_values | texts,
        max_size=8,
    )
)
def test_security_segment_messages_translate_or_are_rejected(message: dict[str, Any]) -> None:
    outcome = translate_message(message, compact_size(message), NOW, SegmentMapping())
    if isinstance(outcome, SubmittedEvent):
        _check_outcome(record_touchpoint(outcome, CONTEXT, POLICY))


# The properties, traits and context fields the Segment translator reads, each with any value.
line_items = st.lists(
    st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(
            ("sku", "product_id", "id", "name", "category", "quantity", "price"),
            json_values | texts,
        ),
    ),
    max_size=3,
)
# Scalars of every JSON type first: json_values alone rarely draws a bare number.
any_field = (
    st.integers(min_value=-10, max_value=10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | texts
    | json_values
    | line_items
)
segment_properties = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        (
            "order_id",
            "revenue",
            "total",
            "value",
            "currency",
            "products",
            "duration",
            "outcome",
            "reason",
            "direction",
            "email_subject",
            "subject",
            "campaign_message_id",
            "branch_id",
            "purpose",
            "url",
            "referrer",
        ),
        any_field,
    ),
)
segment_context = st.fixed_dictionaries(
    {},
    optional={
        "channel": json_values | st.sampled_from(["browser", "mobile", "server"]),
        "library": json_values | st.fixed_dictionaries({"name": json_values | texts}),
        "device": json_values | st.fixed_dictionaries({"type": json_values, "id": json_values}),
        "page": json_values | st.fixed_dictionaries({"url": json_values, "referrer": json_values}),
        "traits": st.dictionaries(st.sampled_from(["email", "phone"]), json_values | texts),
        "consent": json_values
        | st.fixed_dictionaries({"categoryPreferences": st.dictionaries(texts, json_values)}),
    },
)


@settings(EXAMPLES, max_examples=300)
@given(
    st.sampled_from(["track", "track", "track", "identify", "page", "screen"]),
    st.sampled_from(
        [
            "Order Completed",
            "Call Completed",
            "Email Opened",
            "Branch Visited",
            "Application Opened",
            "Unmapped Thing",
        ]
    ),
    segment_properties,
    segment_context,
    st.dictionaries(st.sampled_from(["email", "phone", "first_name"]), json_values | texts),
    json_values,
)
def test_security_segment_fields_of_any_type_translate_or_are_rejected(
    kind: str,
    event: str,
    properties: dict[str, Any],
    context: dict[str, Any],
    traits: dict[str, Any],
    user_id: object,
) -> None:
    """Every field the translator reads, of any JSON type: a touchpoint or a rejection."""
    message = {
        "type": kind,
        "event": event,
        "userId": user_id,
        "anonymousId": "anon-1",
        "properties": properties,
        "context": context,
        "traits": traits,
    }
    outcome = translate_message(message, compact_size(message), NOW, SegmentMapping())
    if isinstance(outcome, SubmittedEvent):
        _check_outcome(record_touchpoint(outcome, CONTEXT, POLICY))


@EXAMPLES
@given(
    near_touchpoints,
    st.fixed_dictionaries(
        {"specversion": st.just("1.0"), "id": texts, "source": texts, "type": texts},
        optional={
            "time": json_values | texts,
            "datacontenttype": json_values | st.just("application/json"),
            "data_base64": json_values | texts,
        },
    ),
)
def test_security_cloudevents_attributes_of_any_type_are_accepted_or_rejected(
    data: dict[str, Any], attributes: dict[str, Any]
) -> None:
    """A structured CloudEvent with attributes of any JSON type, through native validation."""
    document = {**attributes, "data": data}
    outcome = cloudevents.from_structured(document, compact_size(document))
    assert isinstance(outcome, SubmittedEvent | Rejection)
    if isinstance(outcome, SubmittedEvent):
        _check_outcome(record_touchpoint(outcome, CONTEXT, POLICY))


RULES = IdentityRules()


@EXAMPLES
@given(
    st.sampled_from(["email", "phone", "customer_id", "anonymous_id", "device_id", "loyalty"]),
    texts,
)
def test_security_profile_identifier_normalisation_never_raises_and_is_idempotent(
    id_type: str, value: str
) -> None:
    once = RULES.normalize(id_type, value)
    assert RULES.normalize(id_type, once) == once
    RULES.is_blocked((id_type, once))


@EXAMPLES
@given(near_identifiers)
def test_security_profile_identity_keys_of_any_valid_identifiers(raw: dict[str, Any]) -> None:
    try:
        identifiers = Identifiers.model_validate(raw)
    except ValueError:
        return  # the contract refuses it: ingest never lets it through
    for id_type, value in RULES.keys(identifiers):
        assert RULES.normalize(id_type, value) == value
        assert value


def test_security_fast_and_contract_paths_agree_on_a_valid_touchpoint() -> None:
    """Sanity check of the strategies' base: the valid touchpoint is accepted, normalised."""
    event = _valid_touchpoint()
    outcome = record_touchpoint(
        SubmittedEvent(None, compact_size(event), msgspec.json.encode(event)), CONTEXT, POLICY
    )
    assert isinstance(outcome, RecordedTouchpoint)
    recorded = outcome.event()
    assert recorded.data.identifiers.email == "a@b.example"
    assert recorded.data.identifiers.phone == "+12025550123"
