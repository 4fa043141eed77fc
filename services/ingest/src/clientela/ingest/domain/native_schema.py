"""msgspec mirror of the Touchpoint contract: the fast decoder of the intake hot path.

The pydantic contract in clientela.shared.contracts stays the source of truth. These structs
decode the same JSON about ten times faster; every constraint they cannot express (model
validators, decimal digits, URLs, currencies) is checked in `fast_checks`. Whatever these
structs or checks refuse is handed to the pydantic path, which decides and words the errors,
so the mirror may only ever be *stricter* than the contract (tests compare the two).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from clientela.shared.contracts import (
    CallOutcome,
    Channel,
    ConsentStatus,
    Direction,
    TouchpointKind,
)

ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
LongText = Annotated[str, msgspec.Meta(max_length=4096)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
IdentifierValue = Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Seconds = Annotated[int, msgspec.Meta(ge=0, le=86_400)]
TraitValue = str | int | float | bool | None
Traits = Annotated[dict[ShortText, TraitValue], msgspec.Meta(max_length=200)]


class _Struct(msgspec.Struct, kw_only=True):
    """Base: keyword-only fields, unknown fields ignored (as in the contracts)."""


class IdentifiersS(_Struct):
    """Mirror of Identifiers."""

    customer_id: IdentifierValue | None = None
    email: IdentifierValue | None = None
    phone: IdentifierValue | None = None
    device_id: IdentifierValue | None = None
    anonymous_id: IdentifierValue | None = None
    extra: dict[ShortText, IdentifierValue] = {}


class AgentS(_Struct):
    """Mirror of Agent."""

    agent_id: ShortText
    role: ShortText | None = None
    team: ShortText | None = None


class ConsentChangeS(_Struct):
    """Mirror of ConsentChange."""

    channel: Channel
    status: ConsentStatus


class MoneyS(_Struct):
    """Mirror of Money."""

    amount: Decimal
    currency: Currency


class LineItemS(_Struct):
    """Mirror of LineItem."""

    sku: ShortText
    name: ShortText | None = None
    category: ShortText | None = None
    quantity: Decimal = Decimal(1)
    unit_price: Decimal | None = None


class SaleDetailsS(_Struct):
    """Mirror of SaleDetails."""

    order_id: ShortText
    amount: Decimal
    currency: Currency
    items: Annotated[list[LineItemS], msgspec.Meta(max_length=1000)] = []


class PhoneCallDetailsS(_Struct):
    """Mirror of PhoneCallDetails."""

    duration_seconds: Seconds
    outcome: CallOutcome
    reason: ShortText | None = None


class EmailDetailsS(_Struct):
    """Mirror of EmailDetails."""

    opened: bool = False
    clicked: bool = False
    bounced: bool = False
    unsubscribed: bool = False
    subject: ShortText | None = None
    campaign_message_id: ShortText | None = None


class WebVisitDetailsS(_Struct):
    """Mirror of WebVisitDetails (URLs are checked by fast_checks)."""

    url: str | None = None
    referrer: str | None = None
    page_views: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1
    duration_seconds: Seconds | None = None


class BranchVisitDetailsS(_Struct):
    """Mirror of BranchVisitDetails."""

    branch_id: ShortText
    purpose: ShortText | None = None
    duration_seconds: Seconds | None = None


class TouchpointS(_Struct):
    """Mirror of Touchpoint."""

    kind: TouchpointKind
    channel: Channel
    direction: Direction
    identifiers: IdentifiersS
    agent: AgentS | None = None
    cost: MoneyS | None = None
    traits: Traits = {}
    consent: Annotated[list[ConsentChangeS], msgspec.Meta(max_length=20)] = []
    sale: SaleDetailsS | None = None
    call: PhoneCallDetailsS | None = None
    email: EmailDetailsS | None = None
    web_visit: WebVisitDetailsS | None = None
    branch_visit: BranchVisitDetailsS | None = None
    properties: Traits = {}
    note: LongText | None = None


class NativeTouchpointS(TouchpointS):
    """A native touchpoint with its envelope fields, decoded in one pass.

    The envelope fields are unset (so not encoded) once read: the instance then encodes as
    the touchpoint alone, the `data` of its TouchpointRecorded.
    """

    event_id: EventId | msgspec.UnsetType | None = msgspec.UNSET
    occurred_at: AwareDatetime | msgspec.UnsetType | None = msgspec.UNSET
    sent_at: AwareDatetime | msgspec.UnsetType | None = msgspec.UNSET
    source: ShortText | msgspec.UnsetType | None = msgspec.UNSET
    correlation_id: EventId | msgspec.UnsetType | None = msgspec.UNSET


class TouchpointRecordedS(_Struct, kw_only=True):
    """Mirror of TouchpointRecorded, used only to encode accepted events."""

    event_id: str
    type: str = "touchpoint.recorded"
    schema_version: int = 1
    occurred_at: datetime
    source: str
    correlation_id: str | None
    causation_id: str | None = None
    data: TouchpointS


class BatchBodyS(_Struct):
    """A native body of the form {"batch": [...]}; items stay undecoded."""

    batch: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


native_decoder = msgspec.json.Decoder(NativeTouchpointS)
batch_decoder = msgspec.json.Decoder(BatchBodyS)
raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
encoder = msgspec.json.Encoder(decimal_format="string")
