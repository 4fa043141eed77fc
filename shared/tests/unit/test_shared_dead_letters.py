"""Dead letters keep the original bytes within a budget, so they always fit a message."""

from __future__ import annotations

import base64
import hashlib

from clientela.shared.codec import encode_event
from clientela.shared.contracts import DeadLetter, DeadLetterEvent, FieldError
from clientela.shared.contracts.dead_letter import (
    MAX_ORIGINAL_KEY_BYTES,
    MAX_ORIGINAL_VALUE_BYTES,
)

MESSAGE_LIMIT = 1_048_576


def letter(
    value: bytes | None,
    key: bytes | None = b"k",
    headers: list[tuple[str, bytes]] | None = None,
) -> DeadLetter:
    return DeadLetter.of_record(
        reason_code="invalid",
        reason="event does not match its contract",
        errors=[FieldError(path="data.kind", reason="Field required")],
        source_topic="touchpoints.v1",
        source_partition=2,
        source_offset=40,
        consumer="clientela-profile",
        key=key,
        value=value,
        headers=[("content-type", b"application/json")] if headers is None else headers,
    )


def test_a_small_record_is_kept_whole_with_its_size_and_digest() -> None:
    value = b'{"type": "nope"}'
    data = letter(value)
    assert data.original_value_b64 is not None
    assert base64.b64decode(data.original_value_b64) == value
    assert data.original_value_bytes == len(value)
    assert data.original_value_sha256 == hashlib.sha256(value).hexdigest()
    assert data.original_value_truncated is False
    assert data.original_key_b64 == base64.b64encode(b"k").decode()
    assert data.original_headers == {"content-type": "application/json"}


def test_a_large_record_keeps_its_start_and_the_letter_fits_a_message() -> None:
    value = bytes(range(256)) * 8_000  # ~2 MB, over any record limit
    key = b"K" * (MAX_ORIGINAL_KEY_BYTES * 4)
    headers = [(f"h{i}", b"v" * 100_000) for i in range(100)]
    data = letter(value, key=key, headers=headers)
    assert data.original_value_truncated is True
    assert data.original_value_bytes == len(value)
    assert data.original_value_sha256 == hashlib.sha256(value).hexdigest()
    assert data.original_value_b64 is not None
    kept = base64.b64decode(data.original_value_b64)
    assert kept == value[:MAX_ORIGINAL_VALUE_BYTES]
    assert data.original_key_truncated is True
    assert data.original_key_b64 is not None
    assert base64.b64decode(data.original_key_b64) == key[:MAX_ORIGINAL_KEY_BYTES]
    event = DeadLetterEvent(source="clientela-profile", data=data)
    assert len(encode_event(event)) < MESSAGE_LIMIT // 2


def test_a_record_exactly_at_the_budget_is_not_truncated() -> None:
    data = letter(b"x" * MAX_ORIGINAL_VALUE_BYTES)
    assert data.original_value_truncated is False
    assert data.original_value_bytes == MAX_ORIGINAL_VALUE_BYTES


def test_a_record_without_value_or_key_says_so() -> None:
    data = letter(None, key=None)
    assert data.original_value_b64 is None
    assert data.original_value_bytes is None
    assert data.original_value_sha256 is None
    assert data.original_value_truncated is False
    assert data.original_key_b64 is None


def test_letters_written_before_the_size_fields_still_decode() -> None:
    old = (
        b'{"reason_code": "invalid", "reason": "r", "source_topic": "t", "consumer": "c",'
        b' "original_value_b64": "eA=="}'
    )
    data = DeadLetter.model_validate_json(old)
    assert data.original_value_truncated is False
    assert data.original_value_bytes is None
