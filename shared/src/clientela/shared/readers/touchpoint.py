"""The fast reader of `touchpoints.v1`: views of `TouchpointRecorded` decoded with msgspec.

The views mirror the contract's field names and types (enums, `Decimal`, aware `datetime`), so
code written against the contract reads them unchanged. msgspec checks lengths, ranges, enums
and types; `_sure` checks the rest of the contract's rules and anything msgspec could read
differently from pydantic (see `clientela.shared.readers`).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from pydantic import AnyUrl, TypeAdapter, ValidationError

from clientela.shared.contracts import (
    CallOutcome,
    Channel,
    ConsentStatus,
    Direction,
    IdentifierType,
    TouchpointKind,
    TouchpointRecorded,
)
from clientela.shared.contracts.currencies import ISO_4217_CODES
from clientela.shared.readers import ContractReader

ShortText = Annotated[str, Meta(min_length=1, max_length=256)]
LongText = Annotated[str, Meta(max_length=4096)]
EventId = Annotated[str, Meta(min_length=1, max_length=128)]
IdentifierValue = Annotated[str, Meta(min_length=1, max_length=320)]
Currency = Annotated[str, Meta(min_length=3, max_length=3)]
Seconds = Annotated[int, Meta(ge=0, le=86_400)]
AwareTime = Annotated[datetime, Meta(tz=True)]
TraitValue = str | int | float | bool | None


class Amount(Decimal):
    """A decimal read as pydantic reads it: a JSON string exactly, a JSON number as a float."""

    __slots__ = ()


def _amount(kind: type, value: Any) -> Any:
    """Return the Amount of a JSON value (msgspec's hook for types it does not know)."""
    if kind is not Amount:
        raise NotImplementedError(f"no reading for {kind}")
    if isinstance(value, str):
        try:
            return Amount(value)
        except InvalidOperation:
            raise ValueError("not a decimal") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return Amount(value)
    if isinstance(value, float):
        # pydantic reads a JSON number into a float first: 1.50 arrives as 1.5, 2.0 as 2.
        return Amount(int(value)) if value.is_integer() else Amount(repr(value))
    raise ValueError("not a decimal")


class IdentifiersView(msgspec.Struct, kw_only=True, gc=False):
    """The ways a touchpoint names its person (`Identifiers`)."""

    customer_id: IdentifierValue | None = None
    email: IdentifierValue | None = None
    phone: IdentifierValue | None = None
    device_id: IdentifierValue | None = None
    anonymous_id: IdentifierValue | None = None
    extra: dict[ShortText, IdentifierValue] = msgspec.field(default_factory=dict)

    def pairs(self) -> list[tuple[str, str]]:
        """Return (type, value) pairs, built-in types first in priority order."""
        found = [(t, v) for t in _BUILT_IN if (v := getattr(self, t)) is not None]
        found.extend(sorted(self.extra.items()))
        return found


class AgentView(msgspec.Struct, kw_only=True, gc=False):
    """The employee who handled a touchpoint (`Agent`)."""

    agent_id: ShortText
    role: ShortText | None = None
    team: ShortText | None = None


class MoneyView(msgspec.Struct, kw_only=True, gc=False):
    """An amount in an ISO 4217 currency (`Money`)."""

    amount: Amount
    currency: Currency


class ConsentChangeView(msgspec.Struct, kw_only=True, gc=False):
    """A consent decision stated during the touchpoint (`ConsentChange`)."""

    channel: Channel
    status: ConsentStatus


class LineItemView(msgspec.Struct, kw_only=True, gc=False):
    """One line of a sale (`LineItem`)."""

    sku: ShortText
    name: ShortText | None = None
    category: ShortText | None = None
    quantity: Amount = Amount(1)
    unit_price: Amount | None = None


class SaleView(msgspec.Struct, kw_only=True, gc=False):
    """Kind-specific fields of a sale (`SaleDetails`)."""

    order_id: ShortText
    amount: Amount
    currency: Currency
    items: Annotated[list[LineItemView], Meta(max_length=1000)] = msgspec.field(
        default_factory=list
    )


class CallView(msgspec.Struct, kw_only=True, gc=False):
    """Kind-specific fields of a phone call (`PhoneCallDetails`)."""

    duration_seconds: Seconds
    outcome: CallOutcome
    reason: ShortText | None = None


class EmailView(msgspec.Struct, kw_only=True, gc=False):
    """Kind-specific fields of an email (`EmailDetails`)."""

    opened: bool = False
    clicked: bool = False
    bounced: bool = False
    unsubscribed: bool = False
    subject: ShortText | None = None
    campaign_message_id: ShortText | None = None


class WebVisitView(msgspec.Struct, kw_only=True, gc=False):
    """Kind-specific fields of a web visit (`WebVisitDetails`); URLs as the contract writes them."""

    url: str | None = None
    referrer: str | None = None
    page_views: Annotated[int, Meta(ge=1, le=100_000)] = 1
    duration_seconds: Seconds | None = None


class BranchVisitView(msgspec.Struct, kw_only=True, gc=False):
    """Kind-specific fields of a branch visit (`BranchVisitDetails`)."""

    branch_id: ShortText
    purpose: ShortText | None = None
    duration_seconds: Seconds | None = None


class TouchpointView(msgspec.Struct, kw_only=True, gc=False):
    """One interaction (`Touchpoint`)."""

    kind: TouchpointKind
    channel: Channel
    direction: Direction
    identifiers: IdentifiersView
    agent: AgentView | None = None
    cost: MoneyView | None = None
    traits: Annotated[dict[ShortText, TraitValue], Meta(max_length=200)] = msgspec.field(
        default_factory=dict
    )
    consent: Annotated[list[ConsentChangeView], Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    sale: SaleView | None = None
    call: CallView | None = None
    email: EmailView | None = None
    web_visit: WebVisitView | None = None
    branch_visit: BranchVisitView | None = None
    properties: Annotated[dict[ShortText, TraitValue], Meta(max_length=200)] = msgspec.field(
        default_factory=dict
    )
    note: LongText | None = None


class TouchpointRecordedView(msgspec.Struct, kw_only=True, gc=False):
    """A touchpoint accepted by ingest (`TouchpointRecorded`), as the fast reader reads it."""

    # Required here though the contract has defaults for them: a record without them gets a
    # fresh id and time from the contract, which the fallback then carries.
    event_id: EventId
    occurred_at: AwareTime
    source: ShortText
    type: Literal["touchpoint.recorded"] = "touchpoint.recorded"
    schema_version: Annotated[int, Meta(ge=1, le=TouchpointRecorded.SCHEMA_VERSION)] = 1
    correlation_id: EventId | None = None
    causation_id: EventId | None = None
    data: TouchpointView


_BUILT_IN: tuple[str, ...] = tuple(kind.value for kind in IdentifierType)
_DETAILS = ("sale", "call", "email", "web_visit", "branch_visit")
_DETAIL_OF_KIND: dict[TouchpointKind, str] = {
    TouchpointKind.SALE: "sale",
    TouchpointKind.PHONE_CALL: "call",
    TouchpointKind.EMAIL: "email",
    TouchpointKind.WEB_VISIT: "web_visit",
    TouchpointKind.BRANCH_VISIT: "branch_visit",
}
# msgspec rounds a time's 7th fractional digit where pydantic truncates it: leave such
# records to the contract (a literal first keeps the search cheap; msgspec refuses a comma).
_LONG_FRACTION = re.compile(rb"\.\d{7}")
_URL: TypeAdapter[AnyUrl] = TypeAdapter(AnyUrl)


def _sure_amount(value: Decimal, max_digits: int = 18, positive: bool = False) -> bool:
    """Return whether the contract accepts this amount (the plain cases; others it decides)."""
    sign, digits, exponent = value.as_tuple()
    if sign or not isinstance(exponent, int) or not -4 <= exponent <= 0:
        return False
    # The contract's places (4) come out of its digits: at most max_digits - 4 before the point.
    if len(digits) > max_digits or len(digits) + exponent > max_digits - 4:
        return False
    return not positive or any(digits)


def _sure_url(url: str) -> str | None:
    """Return the URL as the contract keeps it, or None when the contract refuses it."""
    try:
        return str(_URL.validate_python(url))
    except ValidationError:
        return None


def _sure_details(data: TouchpointView) -> bool:
    expected = _DETAIL_OF_KIND.get(data.kind)
    return all((getattr(data, name) is not None) is (name == expected) for name in _DETAILS)


def _sure_sale(sale: SaleView) -> bool:
    if sale.currency not in ISO_4217_CODES or not _sure_amount(sale.amount):
        return False
    for item in sale.items:
        if not _sure_amount(item.quantity, 12, positive=True):
            return False
        if item.unit_price is not None and not _sure_amount(item.unit_price):
            return False
    return True


def _sure_web_visit(visit: WebVisitView) -> bool:
    if visit.url is not None:
        visit.url = _sure_url(visit.url)
        if visit.url is None:
            return False
    if visit.referrer is not None:
        visit.referrer = _sure_url(visit.referrer)
        if visit.referrer is None:
            return False
    return True


def _sure(view: TouchpointRecordedView, raw: bytes) -> bool:
    """Return whether the contract accepts this record with exactly these values."""
    data = view.data
    ids = data.identifiers
    if (
        ids.customer_id is None
        and ids.email is None
        and ids.phone is None
        and ids.device_id is None
        and ids.anonymous_id is None
        and not ids.extra
    ):
        return False
    if not _sure_details(data):
        return False
    cost = data.cost
    if cost is not None and (cost.currency not in ISO_4217_CODES or not _sure_amount(cost.amount)):
        return False
    if data.sale is not None and not _sure_sale(data.sale):
        return False
    if data.web_visit is not None and not _sure_web_visit(data.web_visit):
        return False
    return _LONG_FRACTION.search(raw) is None


TOUCHPOINTS: ContractReader[TouchpointRecordedView] = ContractReader(
    TouchpointRecorded, TouchpointRecordedView, _sure, dec_hook=_amount
)
"""The reader of `touchpoints.v1`."""


def touchpoint_view(event: TouchpointRecorded) -> TouchpointRecordedView:
    """Return the view of a touchpoint the contract has already validated."""
    return TOUCHPOINTS.from_model(event)


def _encode_amount(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_encode_amount)


def encode_touchpoint(view: TouchpointRecordedView) -> bytes:
    """Return a view as the contract's JSON (what the contract reads back to the same view)."""
    return _ENCODER.encode(view)


def touchpoint_builtins(view: TouchpointRecordedView) -> dict[str, Any]:
    """Return a view as JSON-ready values."""
    found: dict[str, Any] = msgspec.to_builtins(view, enc_hook=_encode_amount)
    return found
