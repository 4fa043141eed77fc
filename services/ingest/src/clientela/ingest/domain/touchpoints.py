"""Turning one submitted touchpoint into a TouchpointRecorded event, or a rejection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from clientela.ingest.domain.normalisation import normalise_touchpoint_fields
from clientela.ingest.domain.policy import IntakePolicy
from clientela.shared.codec import field_errors
from clientela.shared.contracts import FieldError, Touchpoint, TouchpointRecorded, new_event_id
from clientela.shared.contracts.base import EventId, ShortText


@dataclass(frozen=True, slots=True)
class SubmittedEvent:
    """One event as it arrived (decoded JSON, not yet validated) and its encoded size."""

    payload: object
    size_bytes: int


@dataclass(frozen=True, slots=True)
class IntakeContext:
    """What is known about a submission besides its events: who sent it and when."""

    default_source: str
    received_at: datetime
    accepted_at_ms: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that was not accepted, with every reason found."""

    event_id: str | None
    errors: tuple[FieldError, ...]


class _EnvelopeFields(BaseModel):
    """The optional envelope fields a native touchpoint may carry next to its data."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: EventId | None = None
    occurred_at: AwareDatetime | None = None
    source: ShortText | None = None
    correlation_id: EventId | None = None


def record_touchpoint(
    submitted: SubmittedEvent, context: IntakeContext, policy: IntakePolicy
) -> TouchpointRecorded | Rejection:
    """Validate and normalise one native touchpoint into its event, or say why not."""
    payload = submitted.payload
    if not isinstance(payload, Mapping):
        return Rejection(None, (FieldError(path="$", reason="an event must be a JSON object"),))
    given_id = payload.get("event_id")
    given_id = given_id if isinstance(given_id, str) else None
    if submitted.size_bytes > policy.max_event_bytes:
        reason = f"event of {submitted.size_bytes} bytes exceeds {policy.max_event_bytes} bytes"
        return Rejection(given_id, (FieldError(path="$", reason=reason),))

    normalised, errors = normalise_touchpoint_fields(
        payload, policy.default_region, policy.phone_check
    )
    envelope: _EnvelopeFields | None = None
    touchpoint: Touchpoint | None = None
    try:
        envelope = _EnvelopeFields.model_validate(normalised)
    except ValidationError as exc:
        errors.extend(field_errors(exc))
    try:
        touchpoint = Touchpoint.model_validate(normalised)
    except ValidationError as exc:
        errors.extend(field_errors(exc))
    occurred_at = envelope.occurred_at if envelope else None
    if occurred_at is not None and occurred_at > context.received_at + policy.max_future_skew:
        skew = int(policy.max_future_skew.total_seconds())
        errors.append(FieldError(path="occurred_at", reason=f"is more than {skew} s in the future"))
    if errors or envelope is None or touchpoint is None:
        return Rejection(given_id, tuple(errors))

    event_id = envelope.event_id or new_event_id()
    return TouchpointRecorded(
        event_id=event_id,
        occurred_at=(occurred_at or context.received_at).astimezone(UTC),
        source=envelope.source or context.default_source,
        correlation_id=envelope.correlation_id or event_id,
        data=touchpoint,
    )
