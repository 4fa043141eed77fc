"""The native body format: one touchpoint object, an array of them, or {"batch": [...]}."""

from __future__ import annotations

import json
from typing import Any, NoReturn

from clientela.ingest.domain.touchpoints import SubmittedEvent


class MalformedBodyError(ValueError):
    """The body is not JSON, or not one of the accepted shapes."""


def _refuse_constant(name: str) -> NoReturn:
    raise MalformedBodyError(f"body is not valid JSON: {name} is not a JSON value")


def _encoded_size(item: Any) -> int:
    # Sizes are measured on the compact re-encoding so that whitespace in a batch does not count.
    return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())


def unpack_native(body: bytes) -> list[SubmittedEvent]:
    """Split a native request body into submitted events, or raise MalformedBodyError."""
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body is not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise MalformedBodyError(f"body is not valid JSON: {exc}") from exc
    if isinstance(document, dict) and "batch" in document:
        items = document["batch"]
        if not isinstance(items, list):
            raise MalformedBodyError("'batch' must be a JSON array")
    elif isinstance(document, list):
        items = document
    elif isinstance(document, dict):
        items = [document]
    else:
        raise MalformedBodyError(
            'body must be a touchpoint object, an array of them or {"batch": [...]}'
        )
    if not items:
        raise MalformedBodyError("body holds no events")
    return [SubmittedEvent(item, _encoded_size(item)) for item in items]
