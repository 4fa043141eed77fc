"""Turning one submitted touchpoint into an encoded TouchpointRecorded event, or a rejection.

Two paths give the same answer: a fast one (msgspec mirror of the contract) for the common,
valid event, and the pydantic contract itself for everything the fast path refuses, which
then decides and words the field errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import msgspec
from pydantic import AnyUrl, AwareDatetime, BaseModel, ConfigDict, TypeAdapter, ValidationError

from clientela.ingest.domain import native_schema as ns
from clientela.ingest.domain.identity import identity_key, key_for
from clientela.ingest.domain.normalisation import (
    InvalidPhoneError,
    normalise_currency,
    normalise_email,
    normalise_phone,
    normalise_touchpoint_fields,
)
from clientela.ingest.domain.policy import IntakePolicy
from clientela.shared.codec import encode_event, field_errors
from clientela.shared.contracts import FieldError, Touchpoint, TouchpointRecorded, new_event_id
from clientela.shared.contracts.base import EventId, ShortText
from clientela.shared.contracts.currencies import ISO_4217_CODES
from clientela.shared.contracts.touchpoint import TouchpointKind


class SubmittedEvent(NamedTuple):
    """One event as it arrived: decoded JSON, or its raw JSON bytes, and its encoded size."""

    # NamedTuples, not frozen dataclasses, on the per-event path: five times cheaper to build.
    payload: object
    size_bytes: int
    raw: bytes | None = None

    def decoded(self) -> object:
        """Return the event as decoded JSON (decoding the raw bytes when needed)."""
        if self.raw is not None and self.payload is None:
            return msgspec.json.decode(self.raw)
        return self.payload


@dataclass(frozen=True, slots=True)
class IntakeContext:
    """What is known about a submission besides its events: who sent it and when."""

    default_source: str
    received_at: datetime
    accepted_at_ms: int


class RecordedTouchpoint(NamedTuple):
    """An accepted event, encoded: its id, partition key, JSON and whether it names a message."""

    event_id: str
    key: str
    value: bytes
    # True unless known otherwise: a consumer reads a touchpoint said to name a message.
    refers_to_message: bool = True

    def event(self) -> TouchpointRecorded:
        """Return the event as its contract (decodes the JSON; for tests and tools)."""
        return TouchpointRecorded.model_validate_json(self.value)


# A touchpoint answers a campaign message when its e-mail details or this property name it.
MESSAGE_PROPERTY = "campaign_message_id"


def refers_to_message(email_message_id: str | None, properties: Mapping[str, object]) -> bool:
    """Return whether a touchpoint names a campaign message (the rule campaign reads by)."""
    if email_message_id:
        return True
    named = properties.get(MESSAGE_PROPERTY)
    return isinstance(named, str) and bool(named)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that was not accepted, with every reason found and a reason code."""

    event_id: str | None
    errors: tuple[FieldError, ...]
    code: str = "invalid"


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event of a type ingest acknowledges but does not record (e.g. Segment `alias`)."""

    event_id: str | None
    reason: str


class _EnvelopeFields(BaseModel):
    """The optional envelope fields a native touchpoint may carry next to its data."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: EventId | None = None
    occurred_at: AwareDatetime | None = None
    sent_at: AwareDatetime | None = None
    source: ShortText | None = None
    correlation_id: EventId | None = None


def corrected_time(
    client_time: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Return the event time with the client's clock skew removed, the way Segment does it.

    The client stamps both the event and the moment it sent it with its own clock; the
    difference between our arrival time and its send time is its skew (plus transit), so
    `occurred = client_time + (received_at - sent_at)`. Without sentAt the time is trusted.
    """
    if client_time is None:
        return received_at
    if sent_at is None:
        return client_time
    return client_time + (received_at - sent_at)


def record_touchpoint(
    submitted: SubmittedEvent, context: IntakeContext, policy: IntakePolicy
) -> RecordedTouchpoint | Rejection:
    """Validate and normalise one native touchpoint into its encoded event, or say why not."""
    if submitted.size_bytes > policy.max_event_bytes:
        reason = f"event of {submitted.size_bytes} bytes exceeds {policy.max_event_bytes} bytes"
        return Rejection(_given_id(submitted), (FieldError(path="$", reason=reason),), "oversized")
    return _fast_path(submitted, context, policy) or _contract_path(submitted, context, policy)


def _given_id(submitted: SubmittedEvent) -> str | None:
    try:
        payload = submitted.decoded()
    except msgspec.DecodeError:
        return None
    given = payload.get("event_id") if isinstance(payload, Mapping) else None
    return given if isinstance(given, str) else None


# ---------------------------------------------------------------------------------------------
# Fast path: msgspec decode, in-place normalisation, the contract's remaining rules.


def _fast_path(
    submitted: SubmittedEvent, context: IntakeContext, policy: IntakePolicy
) -> RecordedTouchpoint | None:
    try:
        if submitted.raw is not None:
            touchpoint = ns.native_decoder.decode(submitted.raw)
        else:
            touchpoint = msgspec.convert(submitted.payload, ns.NativeTouchpointS)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    # Read the envelope, then unset it: what is left encodes as the touchpoint alone.
    event_id = touchpoint.event_id or new_event_id()
    client_time, sent_at = touchpoint.occurred_at or None, touchpoint.sent_at or None
    source = touchpoint.source or context.default_source
    correlation_id = touchpoint.correlation_id or event_id
    touchpoint.event_id = touchpoint.occurred_at = touchpoint.sent_at = msgspec.UNSET
    touchpoint.source = touchpoint.correlation_id = msgspec.UNSET
    if not (_normalise_fast(touchpoint, policy) and _contract_rules_hold(touchpoint)):
        return None
    occurred_at = corrected_time(client_time, sent_at, context.received_at)
    if occurred_at > context.received_at + policy.max_future_skew:
        return None
    recorded = ns.TouchpointRecordedS(
        event_id=event_id,
        occurred_at=occurred_at.astimezone(UTC),
        source=source,
        correlation_id=correlation_id,
        data=touchpoint,
    )
    email = touchpoint.email
    return RecordedTouchpoint(
        event_id,
        _strongest_key(touchpoint.identifiers),
        ns.encoder.encode(recorded),
        refers_to_message(email.campaign_message_id if email else None, touchpoint.properties),
    )


@lru_cache(maxsize=65_536)
def _cached_phone(value: str, region: str, check: str) -> str:
    # Parsing a phone number costs tens of microseconds; the same people call again and again.
    return normalise_phone(value, region, "valid" if check == "valid" else "possible")


def _normalise_fast(touchpoint: ns.TouchpointS, policy: IntakePolicy) -> bool:
    ids = touchpoint.identifiers
    if ids.email is not None:
        ids.email = normalise_email(ids.email)
        if not ids.email:
            return False
    if ids.phone is not None:
        try:
            ids.phone = _cached_phone(ids.phone, policy.default_region, policy.phone_check)
        except InvalidPhoneError:
            return False
    for money in (touchpoint.sale, touchpoint.cost):
        if money is not None:
            money.currency = normalise_currency(money.currency)
    return True


_SALE, _CALL, _EMAIL = TouchpointKind.SALE, TouchpointKind.PHONE_CALL, TouchpointKind.EMAIL
_WEB_VISIT, _BRANCH_VISIT = TouchpointKind.WEB_VISIT, TouchpointKind.BRANCH_VISIT
_URL: TypeAdapter[AnyUrl] = TypeAdapter(AnyUrl)


def _decimal_fits(value: Decimal, max_digits: int, places: int, *, positive: bool) -> bool:
    # Mirrors pydantic's decimal check: the normalised value's digits and places count.
    if not value.is_finite() or value < 0 or (positive and value == 0):
        return False
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    # Within bounds as written means within bounds: normalising only removes digits and places.
    if -places <= exponent <= 0 and len(digits) <= max_digits - places - exponent:
        return True
    _, digits, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)
    if exponent >= 0:
        decimals, total = 0, len(digits) + exponent
    else:
        decimals = -exponent
        total = max(len(digits), decimals)
    return total <= max_digits and decimals <= places and total - decimals <= max_digits - places


def _money_ok(amount: Decimal, currency: str) -> bool:
    return currency in ISO_4217_CODES and _decimal_fits(amount, 18, 4, positive=False)


def _contract_rules_hold(tp: ns.TouchpointS) -> bool:
    """Check what the msgspec types cannot express; False sends the event to the slow path."""
    ids = tp.identifiers
    if not (
        ids.customer_id or ids.email or ids.phone or ids.device_id or ids.anonymous_id or ids.extra
    ):
        return False
    kind = tp.kind
    # The details of its kind and no others; written out, as a getattr loop costs twice as much.
    if (
        (tp.sale is not None) is not (kind is _SALE)
        or (tp.call is not None) is not (kind is _CALL)
        or (tp.email is not None) is not (kind is _EMAIL)
        or (tp.web_visit is not None) is not (kind is _WEB_VISIT)
        or (tp.branch_visit is not None) is not (kind is _BRANCH_VISIT)
    ):
        return False
    if tp.cost is not None and not _money_ok(tp.cost.amount, tp.cost.currency):
        return False
    if tp.sale is not None:
        if not _money_ok(tp.sale.amount, tp.sale.currency):
            return False
        for item in tp.sale.items:
            if not _decimal_fits(item.quantity, 12, 4, positive=True):
                return False
            if item.unit_price is not None and not _decimal_fits(
                item.unit_price, 18, 4, positive=False
            ):
                return False
    visit = tp.web_visit
    if visit is not None:
        if visit.url is not None:
            visit.url = _normal_url(visit.url)
            if visit.url is None:
                return False
        if visit.referrer is not None:
            visit.referrer = _normal_url(visit.referrer)
            if visit.referrer is None:
                return False
    return True


@lru_cache(maxsize=16_384)
def _normal_url(value: str) -> str | None:
    # The contract stores URLs in pydantic's normal form, so must the fast path; pages repeat.
    try:
        return str(_URL.validate_python(value))
    except ValidationError:
        return None


def _strongest_key(ids: ns.IdentifiersS) -> str:
    # The first identifier in the contract's order (see Identifiers.pairs), as its key.
    if ids.customer_id is not None:
        return _cached_key("customer_id", ids.customer_id)
    if ids.email is not None:
        return _cached_key("email", ids.email)
    if ids.phone is not None:
        return _cached_key("phone", ids.phone)
    if ids.device_id is not None:
        return _cached_key("device_id", ids.device_id)
    if ids.anonymous_id is not None:
        return _cached_key("anonymous_id", ids.anonymous_id)
    return _cached_key(*min(ids.extra.items()))


# A SHA-256 per event is a visible share of the fast path; the same people come back.
_cached_key = lru_cache(maxsize=65_536)(key_for)


# ---------------------------------------------------------------------------------------------
# Contract path: pydantic decides, and words every error with its field path.


def _contract_path(
    submitted: SubmittedEvent, context: IntakeContext, policy: IntakePolicy
) -> RecordedTouchpoint | Rejection:
    try:
        payload: Any = submitted.decoded()
    except msgspec.DecodeError:
        payload = None
    if not isinstance(payload, Mapping):
        return Rejection(
            None, (FieldError(path="$", reason="an event must be a JSON object"),), "not_an_object"
        )
    given_id = payload.get("event_id")
    given_id = given_id if isinstance(given_id, str) else None

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
    code = "invalid"
    occurred_at = None
    if envelope is not None:
        occurred_at = corrected_time(envelope.occurred_at, envelope.sent_at, context.received_at)
        if occurred_at > context.received_at + policy.max_future_skew:
            skew = int(policy.max_future_skew / timedelta(seconds=1))
            reason = f"is more than {skew} s in the future"
            errors.append(FieldError(path="occurred_at", reason=reason))
            code = "future_timestamp"
    if errors or envelope is None or touchpoint is None or occurred_at is None:
        if any(e.path == "identifiers.phone" for e in errors):
            code = "invalid_phone"
        return Rejection(given_id, tuple(errors), code)

    event_id = envelope.event_id or new_event_id()
    event = TouchpointRecorded(
        event_id=event_id,
        occurred_at=occurred_at.astimezone(UTC),
        source=envelope.source or context.default_source,
        correlation_id=envelope.correlation_id or event_id,
        data=touchpoint,
    )
    email = touchpoint.email
    return RecordedTouchpoint(
        event_id,
        identity_key(touchpoint.identifiers),
        encode_event(event),
        refers_to_message(email.campaign_message_id if email else None, touchpoint.properties),
    )
