"""The native body format: one touchpoint object, an array of them, or {"batch": [...]}."""

from __future__ import annotations

import msgspec

from clientela.ingest.domain import native_schema as ns
from clientela.ingest.domain.touchpoints import SubmittedEvent


class MalformedBodyError(ValueError):
    """The body is not JSON, or not one of the accepted shapes."""


def compact_size(item: object) -> int:
    """Return the size of the compact JSON encoding of a decoded value."""
    return len(msgspec.json.encode(item))


def decode_json(body: bytes) -> object:
    """Decode a JSON document, or raise MalformedBodyError saying where it breaks."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc


def _submitted(raw: msgspec.Raw, max_event_bytes: int) -> SubmittedEvent:
    data = bytes(raw)
    size = len(data)
    if size > max_event_bytes:
        # Whitespace inside a batch does not count against the event: measure compactly.
        size = compact_size(msgspec.json.decode(data))
    return SubmittedEvent(None, size, data)


def unpack_native(body: bytes, max_event_bytes: int = 32_768) -> list[SubmittedEvent]:
    """Split a native request body into submitted events, or raise MalformedBodyError.

    The items are not decoded here: each keeps its raw JSON for the fast decoder.
    """
    start = body.lstrip()[:1]
    try:
        if start == b"[":
            items = ns.raw_list_decoder.decode(body)
        elif start == b"{":
            batch = ns.batch_decoder.decode(body)
            items = [msgspec.Raw(body.strip())] if batch.batch is msgspec.UNSET else batch.batch
        else:
            document = decode_json(body)
            raise MalformedBodyError(
                'body must be a touchpoint object, an array of them or {"batch": [...]}'
                if document is not None or body.strip() == b"null"
                else "body holds no events"
            )
    except msgspec.ValidationError as exc:
        # Valid JSON of the wrong shape, e.g. {"batch": 3}.
        raise MalformedBodyError("'batch' must be a JSON array") from exc
    except msgspec.DecodeError as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
    if not items:
        raise MalformedBodyError("body holds no events")
    return [_submitted(item, max_event_bytes) for item in items]
