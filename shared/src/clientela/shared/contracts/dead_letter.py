"""A record a consumer could not process, set aside with the reason."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from clientela.shared.contracts.base import Contract, Envelope, LongText, ShortText


class FieldError(Contract):
    """One validation failure: where and why."""

    path: Annotated[str, StringConstraints(max_length=512)]
    reason: LongText


class DeadLetter(Contract):
    """A record that could not be processed, with where it came from and why."""

    reason_code: ShortText = Field(description="e.g. undecodable, invalid, unsupported_version.")
    reason: LongText
    errors: list[FieldError] = Field(default_factory=list)
    source_topic: ShortText
    source_partition: int | None = None
    source_offset: int | None = None
    consumer: ShortText = Field(description="The consumer group that gave up on the record.")
    original_key_b64: str | None = Field(default=None, description="Original key, base64.")
    original_value_b64: str | None = Field(default=None, description="Original bytes, base64.")
    original_headers: dict[str, str] = Field(default_factory=dict)


class DeadLetterEvent(Envelope):
    """Envelope of DeadLetter on a dead-letter topic."""

    EVENT_TYPE: ClassVar[str] = "dead_letter"
    type: Literal["dead_letter"] = "dead_letter"
    data: DeadLetter
