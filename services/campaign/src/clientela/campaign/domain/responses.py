"""Responses: what in a touchpoint or a profile change answers a campaign message."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from clientela.campaign.domain.model import Contact
from clientela.shared.contracts import Direction, Touchpoint, TouchpointKind

MESSAGE_PROPERTY = "campaign_message_id"
COMPLAINT_PROPERTY = "complaint"


class Reaction(StrEnum):
    """How a person reacted to a message."""

    RESPONSE = "response"
    UNSUBSCRIBE = "unsubscribe"
    COMPLAINT = "complaint"


@dataclass(frozen=True, slots=True)
class MessageReaction:
    """A touchpoint that refers to a campaign message, and what it says about it."""

    message_id: str
    reaction: Reaction
    occurred_at: datetime
    revenue: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Purchase:
    """A sale seen in a profile change: when, and the spend it added."""

    profile_id: str
    at: datetime
    revenue: Decimal


def referenced_message(touchpoint: Touchpoint) -> str | None:
    """Return the campaign message a touchpoint refers to, if any."""
    if touchpoint.email is not None and touchpoint.email.campaign_message_id:
        return touchpoint.email.campaign_message_id
    value = touchpoint.properties.get(MESSAGE_PROPERTY)
    return value if isinstance(value, str) and value else None


def reaction_of(touchpoint: Touchpoint, occurred_at: datetime) -> MessageReaction | None:
    """Classify a touchpoint that refers to a message; None when it says nothing about it.

    An opened email alone is not a response (opens are counted by image loads, which
    privacy features fake); a click, a reply, a call or visit referring to the message, or a
    sale referring to it is.
    """
    message_id = referenced_message(touchpoint)
    if message_id is None:
        return None
    email = touchpoint.email
    if email is not None and email.unsubscribed:
        return MessageReaction(message_id, Reaction.UNSUBSCRIBE, occurred_at)
    if touchpoint.properties.get(COMPLAINT_PROPERTY) is True:
        return MessageReaction(message_id, Reaction.COMPLAINT, occurred_at)
    if touchpoint.kind is TouchpointKind.SUPPORT_CASE:
        return MessageReaction(message_id, Reaction.COMPLAINT, occurred_at)
    if touchpoint.kind is TouchpointKind.SALE and touchpoint.sale is not None:
        return MessageReaction(message_id, Reaction.RESPONSE, occurred_at, touchpoint.sale.amount)
    if email is not None:
        if email.clicked:
            return MessageReaction(message_id, Reaction.RESPONSE, occurred_at)
        if touchpoint.direction is Direction.INBOUND and not email.bounced:
            return MessageReaction(message_id, Reaction.RESPONSE, occurred_at)
        return None
    if touchpoint.direction is Direction.INBOUND:
        return MessageReaction(message_id, Reaction.RESPONSE, occurred_at)
    return None


def purchase_between(old: Contact | None, new: Contact) -> Purchase | None:
    """Return the purchase a profile change reveals (more sales than before), if any."""
    before_count = old.purchase_count if old is not None and old.version > 0 else 0
    before_spend = old.total_spend if old is not None and old.version > 0 else Decimal(0)
    if new.purchase_count <= before_count or new.last_purchase_at is None:
        return None
    return Purchase(
        new.profile_id, new.last_purchase_at, max(new.total_spend - before_spend, Decimal(0))
    )
