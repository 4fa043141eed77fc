"""Encoding of events to Kafka records and back, with the headers every record carries."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from pydantic import ValidationError

from clientela.shared import tracing
from clientela.shared.contracts import Envelope, FieldError, TopicSpec
from clientela.shared.tracing import TraceContext

E = TypeVar("E", bound=Envelope)

HEADER_CONTENT_TYPE = "content-type"
HEADER_TYPE = "clientela-type"
HEADER_SCHEMA_VERSION = "clientela-schema-version"
HEADER_EVENT_ID = "clientela-event-id"
# Wall-clock ms when ingest accepted the originating touchpoint; carried along the chain so
# end-to-end latency can be measured at any hop.
HEADER_ACCEPTED_AT = "clientela-accepted-at-ms"
# On touchpoints: b"1" when the touchpoint names a campaign message, b"0" when it does not;
# a consumer that only wants answers to messages skips the rest without decoding them.
HEADER_REFERS_TO_MESSAGE = "clientela-refers-to-message"

Headers = list[tuple[str, bytes]]
# (topic, key, value, headers): what a publisher sends, without an intermediate object.
Row = tuple[str, bytes | None, bytes | None, Headers]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record ready to be produced."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event a use case wants published: registered topic, key, event, accept time.

    `trace` is the cause's trace context when the cause is not in the batch being handled
    (deferred work); otherwise it is found by the event's causation_id. `linked_causes` are
    the ids of further events the event coalesces (recorded as span links).
    """

    topic: TopicSpec
    key: str
    event: Envelope
    accepted_at_ms: int | None = None
    trace: TraceContext | None = None
    linked_causes: tuple[str, ...] = ()


class EncodedEvent(msgspec.Struct, frozen=True, gc=False):
    """An event already encoded as its contract's JSON, for the outbox (the hot paths' form).

    Built without a model where a use case encodes straight from its state (a test decodes
    it with the contract); type and schema version come from the contract class. A None
    value is a tombstone: the key's deletion on a compacted topic, with no headers.
    """

    # A Struct, not a frozen dataclass: built once per outgoing event, in a fraction of the
    # time. Untracked by the collector: it refers to no container that could refer back.
    topic: TopicSpec
    key: str
    contract: type[Envelope] | None = None
    event_id: str = ""
    value: bytes | None = None
    accepted_at_ms: int | None = None
    causation_id: str | None = None
    # Further events the event coalesces (recorded as span links).
    linked_causes: tuple[str, ...] = ()
    # The cause's trace context when the cause is not in the batch being handled (deferred
    # work); otherwise it is found by causation_id.
    trace: TraceContext | None = None

    @property
    def event_type(self) -> str | None:
        """Return the contract's event type (None for a tombstone)."""
        return self.contract.EVENT_TYPE if self.contract is not None else None

    @classmethod
    def of(cls, out: OutgoingEvent) -> EncodedEvent:
        """Return an event a use case built as a model, encoded."""
        event = out.event
        return cls(
            out.topic,
            out.key,
            type(event),
            event.event_id,
            encode_event(event),
            out.accepted_at_ms,
            event.causation_id,
            out.linked_causes,
            out.trace,
        )


class DecodeError(Exception):
    """A record could not be turned into its contract; carries a reason code and field errors."""

    def __init__(self, code: str, reason: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.errors = list(errors)


def now_ms() -> int:
    """Return the wall-clock time in milliseconds."""
    return time.time_ns() // 1_000_000


_FIXED_HEADERS: dict[tuple[str, int], Headers] = {}
_CONTRACT_HEADERS: dict[type[Envelope], Headers] = {}


def _fixed_headers(event_type: str, schema_version: int) -> Headers:
    """Return the headers every record of an event type and version starts with (shared)."""
    fixed = _FIXED_HEADERS.get((event_type, schema_version))
    if fixed is None:
        fixed = _FIXED_HEADERS[(event_type, schema_version)] = [
            (HEADER_CONTENT_TYPE, b"application/json"),
            (HEADER_TYPE, event_type.encode()),
            (HEADER_SCHEMA_VERSION, str(schema_version).encode()),
        ]
    return fixed


def _contract_fixed_headers(contract: type[Envelope]) -> Headers:
    fixed = _CONTRACT_HEADERS[contract] = _fixed_headers(
        contract.EVENT_TYPE, contract.SCHEMA_VERSION
    )
    return fixed


def headers_for(
    event_type: str,
    schema_version: int,
    event_id: str,
    accepted_at_ms: int | None = None,
    trace: TraceContext | None = None,
) -> Headers:
    """Return the headers of an event record: the one place every producer builds them."""
    return _laid_out(
        _fixed_headers(event_type, schema_version),
        event_id,
        None if accepted_at_ms is None else (HEADER_ACCEPTED_AT, str(accepted_at_ms).encode()),
        trace.headers() if trace is not None else [],
    )


def _laid_out(
    fixed: Headers, event_id: str, accepted: tuple[str, bytes] | None, trace: Headers
) -> Headers:
    """Return a record's headers in their one order: fixed, event id, accept time, trace."""
    headers = [*fixed, (HEADER_EVENT_ID, event_id.encode())]
    if accepted is not None:
        headers.append(accepted)
    if trace:
        headers += trace
    return headers


def encoded_rows(
    events: Iterable[EncodedEvent], topic_name: Callable[[TopicSpec], str]
) -> list[Row]:
    """Return the records of encoded events, their headers as `headers_for` builds them.

    `topic_name` resolves a registered topic to its name (once per topic). Per event only the
    event id and the cause's trace are encoded: the contract's headers, accept times and the
    active trace context are shared by the events of the batch.
    """
    derivation = tracing.Derivation()
    names: dict[str, str] = {}
    accepted: dict[int, tuple[str, bytes]] = {}
    rows: list[Row] = []
    for e in events:
        topic = names.get(e.topic.name)
        if topic is None:
            topic = names[e.topic.name] = topic_name(e.topic)
        contract = e.contract
        if e.value is None or contract is None:
            rows.append((topic, e.key.encode(), e.value, []))
            continue
        fixed = _CONTRACT_HEADERS.get(contract) or _contract_fixed_headers(contract)
        trace = (
            derivation.headers(e.causation_id, topic, e.linked_causes)
            if e.trace is None
            else e.trace.headers()
        )
        at, stamp = e.accepted_at_ms, None
        if at is not None:
            stamp = accepted.get(at)
            if stamp is None:
                stamp = accepted[at] = (HEADER_ACCEPTED_AT, str(at).encode())
        rows.append((topic, e.key.encode(), e.value, _laid_out(fixed, e.event_id, stamp, trace)))
    return rows


def contract_headers(
    contract: type[Envelope],
    event_id: str,
    accepted_at_ms: int | None = None,
    trace: TraceContext | None = None,
) -> Headers:
    """Return the headers of a record of a contract: its type and schema version, from the class."""
    return headers_for(
        contract.EVENT_TYPE, contract.SCHEMA_VERSION, event_id, accepted_at_ms, trace
    )


def encode_event(event: Envelope) -> bytes:
    """Serialise an event to JSON bytes."""
    return event.__pydantic_serializer__.to_json(event)


def to_record(
    topic: str,
    key: str | None,
    event: Envelope,
    accepted_at_ms: int | None = None,
    *,
    trace: TraceContext | None = None,
    linked_causes: Sequence[str] = (),
) -> OutgoingRecord:
    """Build the outgoing record of an event, carrying its cause's trace context."""
    if trace is None:
        trace = tracing.derived(event.causation_id, topic=topic, linked_causes=linked_causes)
    headers = headers_for(event.type, event.schema_version, event.event_id, accepted_at_ms, trace)
    return OutgoingRecord(
        topic=topic,
        key=key.encode() if key is not None else None,
        value=encode_event(event),
        headers=headers,
    )


def header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """Return the first header of that name, or None."""
    for key, value in headers or ():
        if key == name:
            return value
    return None


def accepted_at_ms(headers: Sequence[tuple[str, bytes]] | None) -> int | None:
    """Return the accept timestamp carried in the headers, if any and well formed."""
    raw = header(headers, HEADER_ACCEPTED_AT)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def field_errors(error: ValidationError) -> list[FieldError]:
    """Translate a pydantic error into field paths and reasons."""
    return [
        FieldError(path=".".join(str(part) for part in item["loc"]) or "$", reason=item["msg"])
        for item in error.errors(include_url=False)
    ]


def decode_event(contract: type[E], value: bytes | None, max_bytes: int = 1_048_576) -> E:
    """Decode and validate a record value against a contract, or raise DecodeError."""
    if value is None:
        raise DecodeError("empty", "record has no value")
    if len(value) > max_bytes:
        raise DecodeError("oversized", f"record of {len(value)} bytes exceeds {max_bytes}")
    try:
        return contract.model_validate_json(value)
    except ValidationError as exc:
        # The fast path failed: work out the most useful reason for the dead-letter record.
        raise _diagnose(contract, value, exc) from exc


def _diagnose(contract: type[Envelope], value: bytes, error: ValidationError) -> DecodeError:
    try:
        envelope = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        return DecodeError("undecodable", f"not JSON: {exc}")
    if not isinstance(envelope, Mapping):
        return DecodeError("invalid", "event must be a JSON object")
    event_type = envelope.get("type")
    if event_type != contract.EVENT_TYPE:
        return DecodeError(
            "unexpected_type", f"expected type {contract.EVENT_TYPE!r}, got {event_type!r}"
        )
    version = envelope.get("schema_version", 1)
    if not isinstance(version, int) or version > contract.SCHEMA_VERSION:
        return DecodeError(
            "unsupported_version",
            f"schema_version {version!r} is not supported (max {contract.SCHEMA_VERSION})",
        )
    return DecodeError("invalid", "event does not match its contract", field_errors(error))
