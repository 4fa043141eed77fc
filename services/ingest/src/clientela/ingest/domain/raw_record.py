"""Records of the raw topic: native JSON, or CloudEvents in structured or binary mode.

The raw topic has no single contract, so each record is told apart by its headers and body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from clientela.ingest.domain import cloudevents
from clientela.ingest.domain.touchpoints import Rejection, SubmittedEvent
from clientela.shared.contracts import FieldError, derived_event_id

CE_HEADER_PREFIX = "ce_"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as read from the raw topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def _header_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def translate_record(record: RawRecord, max_bytes: int) -> SubmittedEvent | Rejection:
    """Turn a raw record into a native submission, or a rejection with a reason code."""
    if record.value is None:
        return Rejection(None, (FieldError(path="$", reason="record has no value"),), "empty")
    if len(record.value) > max_bytes:
        reason = f"record of {len(record.value)} bytes exceeds {max_bytes} bytes"
        return Rejection(None, (FieldError(path="$", reason=reason),), "oversized")
    headers = {k.lower(): v for k, v in record.headers}
    content_type = _header_text(headers["content-type"]) if "content-type" in headers else None
    if f"{CE_HEADER_PREFIX}specversion" in headers:
        attributes = {
            k[len(CE_HEADER_PREFIX) :]: _header_text(v)
            for k, v in headers.items()
            if k.startswith(CE_HEADER_PREFIX)
        }
        return cloudevents.from_binary(attributes, content_type, record.value)
    try:
        document = msgspec.json.decode(record.value)
    except msgspec.DecodeError as exc:
        return Rejection(None, (FieldError(path="$", reason=f"not JSON: {exc}"),), "undecodable")
    if content_type is not None and content_type.startswith(cloudevents.BATCH):
        reason = "CloudEvents batches are not defined for Kafka: one event per record"
        return Rejection(None, (FieldError(path="$", reason=reason),), "invalid_cloudevent")
    structured = content_type is not None and content_type.startswith(cloudevents.STRUCTURED)
    if structured or (isinstance(document, Mapping) and "specversion" in document):
        return cloudevents.from_structured(document, len(record.value))
    if not isinstance(document, Mapping):
        reason = "an event must be a JSON object"
        return Rejection(None, (FieldError(path="$", reason=reason),), "not_an_object")
    native = dict(document)
    # A record without an id gets one from its position, so a redelivery is a duplicate.
    native.setdefault(
        "event_id",
        derived_event_id("raw", record.topic, str(record.partition), str(record.offset)),
    )
    if "occurred_at" not in native and record.timestamp_ms:
        native["occurred_at"] = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC).isoformat()
    return SubmittedEvent(native, len(record.value))
