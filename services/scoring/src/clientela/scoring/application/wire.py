"""Events encoded straight from plain data: the contract's JSON without building models.

Scores are computed by this service and kept inside the contract's bounds by
`contract_bounds` (one vectorised pass per batch), so validating every field again with
pydantic on the way out only costs time. Tests decode what is written here with the
contract to keep the two in step.
"""

from __future__ import annotations

from datetime import datetime
from hashlib import sha1
from typing import Any

import msgspec

from clientela.shared.contracts.base import EVENT_ID_NAMESPACE, Envelope

SOURCE = "scoring"

_encoder = msgspec.json.Encoder()


def encode(data: Any) -> bytes:
    """Return the JSON of plain data (dicts, lists, str, numbers, datetimes)."""
    return _encoder.encode(data)


_NAMESPACE = EVENT_ID_NAMESPACE.bytes


def derived_id(*parts: str) -> str:
    """Return `derived_event_id(*parts)` without building `uuid.UUID` objects (2x cheaper).

    The same name-based UUID (version 5, RFC 4122): the SHA-1 of namespace and name, version
    and variant bits set, in the canonical 8-4-4-4-12 form.
    """
    name = _NAMESPACE + "\x1f".join(parts).encode()
    # SHA-1 is what RFC 4122 prescribes for version 5 names, not a security measure here.
    digest = bytearray(sha1(name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def envelope(
    contract: type[Envelope],
    event_id: str,
    occurred_at: datetime,
    *,
    correlation_id: str,
    causation_id: str,
    data: bytes,
) -> bytes:
    """Return an event's JSON around payload JSON that is already encoded."""
    return _encoder.encode(
        {
            "event_id": event_id,
            "type": contract.EVENT_TYPE,
            "schema_version": contract.SCHEMA_VERSION,
            "occurred_at": occurred_at,
            "source": SOURCE,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "data": msgspec.Raw(data),
        }
    )


class _Reason(msgspec.Struct):
    code: str
    # As the contract reads it: a number is a float.
    value: float | str | None = None
    detail: str = ""


class _Segment(msgspec.Struct):
    segment: str | None = None
    reasons: list[_Reason] = []


_segment_decoder = msgspec.json.Decoder(_Segment)


def published_segment(state: bytes) -> tuple[str | None, dict[str, Any] | None]:
    """Return the segment a stored ScoresUpdated payload published, and its segment rule.

    Only the two fields are decoded (no contract model per profile): a sweep re-publishing
    many customers needs nothing else from what they published before.
    """
    found = _segment_decoder.decode(state)
    rule = next((r for r in found.reasons if r.code == "segment_rule"), None)
    if rule is None:
        return found.segment, None
    return found.segment, {"code": rule.code, "value": rule.value, "detail": rule.detail}
