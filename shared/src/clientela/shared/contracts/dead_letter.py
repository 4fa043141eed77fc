"""A record a consumer could not process, set aside with the reason."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, StringConstraints

from clientela.shared.contracts.base import Contract, Envelope, LongText, ShortText


class FieldError(Contract):
    """One validation failure: where and why."""

    path: Annotated[str, StringConstraints(max_length=512)]
    reason: LongText


# A dead letter must fit the 1 MiB message limit whatever the record it describes, or its
# publication fails on every retry and the partition it came from stops. Base64 adds a third.
MAX_ORIGINAL_VALUE_BYTES = 262_144
MAX_ORIGINAL_KEY_BYTES = 16_384
MAX_ORIGINAL_HEADERS = 32
MAX_ORIGINAL_HEADER_CHARS = 4096
MAX_FIELD_ERRORS = 50


class DeadLetter(Contract):
    """A record that could not be processed, with where it came from and why."""

    reason_code: ShortText = Field(description="e.g. undecodable, invalid, unsupported_version.")
    reason: LongText
    errors: list[FieldError] = Field(default_factory=list)
    source_topic: ShortText
    source_partition: int | None = None
    source_offset: int | None = None
    consumer: ShortText = Field(description="The consumer group that gave up on the record.")
    original_key_b64: str | None = Field(
        default=None, description="Original key, base64 (its first 16 KiB when truncated)."
    )
    original_key_truncated: bool = Field(
        default=False, description="The key is longer than what original_key_b64 holds."
    )
    original_value_b64: str | None = Field(
        default=None,
        description="Original bytes, base64; only the first 256 KiB when "
        "original_value_truncated (such a record cannot be replayed from its dead letter).",
    )
    original_value_bytes: int | None = Field(
        default=None, ge=0, description="Size of the original value in bytes."
    )
    original_value_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the whole original value.",
    )
    original_value_truncated: bool = Field(
        default=False, description="original_value_b64 holds only the start of the value."
    )
    original_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Original headers as text (at most 32, each value cut to 4096 bytes).",
    )

    @classmethod
    def of_record(
        cls,
        *,
        reason_code: str,
        reason: str,
        errors: Sequence[FieldError],
        source_topic: str,
        source_partition: int | None,
        source_offset: int | None,
        consumer: str,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes]],
    ) -> Self:
        """Describe a record, keeping its bytes within budget so the letter is publishable."""
        return cls(
            reason_code=reason_code,
            reason=reason[:4000],
            errors=list(errors[:MAX_FIELD_ERRORS]),
            source_topic=source_topic,
            source_partition=source_partition,
            source_offset=source_offset,
            consumer=consumer,
            original_key_b64=_b64(key[:MAX_ORIGINAL_KEY_BYTES]) if key is not None else None,
            original_key_truncated=key is not None and len(key) > MAX_ORIGINAL_KEY_BYTES,
            original_value_b64=(
                _b64(value[:MAX_ORIGINAL_VALUE_BYTES]) if value is not None else None
            ),
            original_value_bytes=len(value) if value is not None else None,
            original_value_sha256=hashlib.sha256(value).hexdigest() if value is not None else None,
            original_value_truncated=value is not None and len(value) > MAX_ORIGINAL_VALUE_BYTES,
            original_headers={
                k: v[:MAX_ORIGINAL_HEADER_CHARS].decode("utf-8", "replace")
                for k, v in list(headers)[:MAX_ORIGINAL_HEADERS]
            },
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class DeadLetterEvent(Envelope):
    """Envelope of DeadLetter on a dead-letter topic."""

    EVENT_TYPE: ClassVar[str] = "dead_letter"
    type: Literal["dead_letter"] = "dead_letter"
    data: DeadLetter
