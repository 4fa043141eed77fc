"""CloudEvents 1.0 (structured, batch and binary mode) carrying native touchpoints as data.

The event's `data` is a native touchpoint; `source` + `id` identify it, so the touchpoint's
event id is derived from both (the same pair always yields the same id, and the dedup key
follows), and `time` is its event time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import msgspec

from clientela.ingest.domain.touchpoints import Rejection, SubmittedEvent
from clientela.shared.contracts import FieldError, derived_event_id

SPEC_VERSION = "1.0"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
_SOURCE_MAX = 256
_CODE = "invalid_cloudevent"


def cloudevent_id(source: str, event_id: str) -> str:
    """Return the touchpoint event id of the CloudEvent with this source and id."""
    return derived_event_id("cloudevents", source, event_id)


def _refuse(path: str, reason: str, event_id: str | None = None) -> Rejection:
    return Rejection(event_id, (FieldError(path=path, reason=reason),), _CODE)


def _attributes_error(attributes: Mapping[str, Any]) -> Rejection | None:
    if attributes.get("specversion") != SPEC_VERSION:
        return _refuse("specversion", f"must be {SPEC_VERSION!r}")
    for name in ("id", "source", "type"):
        value = attributes.get(name)
        if not isinstance(value, str) or not value:
            return _refuse(name, "is required and must be a non-empty string")
    if len(attributes["source"]) > _SOURCE_MAX:
        return _refuse("source", f"must be at most {_SOURCE_MAX} characters")
    content_type = attributes.get("datacontenttype")
    if content_type is not None and (
        not isinstance(content_type, str) or "json" not in content_type.lower()
    ):
        return _refuse("datacontenttype", "data must be JSON (application/json or */*+json)")
    return None


def _native(attributes: Mapping[str, Any], data: object, size: int) -> SubmittedEvent | Rejection:
    event_id = cloudevent_id(attributes["source"], attributes["id"])
    if not isinstance(data, Mapping):
        return _refuse("data", "must be a JSON object holding a touchpoint", event_id)
    native = dict(data)
    native["event_id"] = event_id
    native["source"] = attributes["source"]
    if attributes.get("time") is not None:
        native["occurred_at"] = attributes["time"]
    return SubmittedEvent(native, size)


def from_structured(document: object, size: int) -> SubmittedEvent | Rejection:
    """Translate one structured-mode CloudEvent (decoded JSON) into a native touchpoint."""
    if not isinstance(document, Mapping):
        return Rejection(
            None, (FieldError(path="$", reason="a CloudEvent must be a JSON object"),), _CODE
        )
    error = _attributes_error(document)
    if error is not None:
        return error
    if "data_base64" in document:
        encoded = document["data_base64"]
        try:
            data: object = msgspec.json.decode(base64.b64decode(encoded, validate=True))
        except (binascii.Error, TypeError, ValueError, msgspec.DecodeError):
            event_id = cloudevent_id(document["source"], document["id"])
            return _refuse("data_base64", "must be base64 of a JSON object", event_id)
    else:
        data = document.get("data")
    return _native(document, data, size)


def from_binary(
    attributes: Mapping[str, str], content_type: str | None, data: bytes
) -> SubmittedEvent | Rejection:
    """Translate a binary-mode CloudEvent (attributes from headers, data as bytes)."""
    merged: dict[str, Any] = dict(attributes)
    if content_type is not None:
        merged["datacontenttype"] = content_type
    error = _attributes_error(merged)
    if error is not None:
        return error
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        event_id = cloudevent_id(merged["source"], merged["id"])
        return _refuse("data", "is not valid JSON", event_id)
    return _native(merged, document, len(data))
