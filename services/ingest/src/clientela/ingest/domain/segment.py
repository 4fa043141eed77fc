"""The Segment spec (track, identify, page, screen, batch) translated into native touchpoints.

A Segment message names a person (`userId`, `anonymousId`, traits) and an action; the mapping
decides which touchpoint kind an action is. Translation only reshapes: the native validation
that follows decides whether the result is a valid touchpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from clientela.ingest.domain.touchpoints import (
    Ignored,
    Rejection,
    SubmittedEvent,
    corrected_time,
)
from clientela.shared.contracts import Channel, Direction, FieldError, TouchpointKind, new_event_id

SegmentType = Literal["track", "identify", "page", "screen", "group", "alias"]
SEGMENT_TYPES: frozenset[str] = frozenset({"track", "identify", "page", "screen", "group", "alias"})
UnmappedTracks = Literal["channel_kind", "ignore", "reject"]

# The properties a kind's details are read from (removed from the free-form properties).
_CONSUMED: dict[TouchpointKind, frozenset[str]] = {
    TouchpointKind.SALE: frozenset(
        {"order_id", "revenue", "total", "value", "currency", "products"}
    ),
    TouchpointKind.PHONE_CALL: frozenset({"duration", "outcome", "reason", "direction"}),
    TouchpointKind.EMAIL: frozenset(
        {"email_subject", "subject", "campaign_message_id", "direction"}
    ),
    TouchpointKind.BRANCH_VISIT: frozenset({"branch_id", "purpose", "duration", "direction"}),
    TouchpointKind.WEB_VISIT: frozenset({"url", "referrer"}),
}
_KIND_CHANNEL: dict[TouchpointKind, Channel] = {
    TouchpointKind.PHONE_CALL: Channel.PHONE,
    TouchpointKind.EMAIL: Channel.EMAIL,
    TouchpointKind.WEB_VISIT: Channel.WEB,
    TouchpointKind.BRANCH_VISIT: Channel.BRANCH,
    TouchpointKind.SMS: Channel.SMS,
    TouchpointKind.MAIL: Channel.MAIL,
    TouchpointKind.APP_SESSION: Channel.APP,
    TouchpointKind.CHAT: Channel.CHAT,
}
_MOBILE_WORDS = ("ios", "android", "react-native", "kotlin", "swift", "flutter")
_MAX_PROPERTIES = 200


@dataclass(frozen=True, slots=True)
class TrackRule:
    """What a track event name becomes: a kind, optionally a channel, direction and details."""

    kind: TouchpointKind
    channel: Channel | None = None
    direction: Direction | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


DEFAULT_TRACK_RULES: dict[str, TrackRule] = {
    "Order Completed": TrackRule(TouchpointKind.SALE),
    "Call Completed": TrackRule(TouchpointKind.PHONE_CALL),
    "Email Delivered": TrackRule(TouchpointKind.EMAIL, direction=Direction.OUTBOUND),
    "Email Opened": TrackRule(
        TouchpointKind.EMAIL, direction=Direction.OUTBOUND, details={"opened": True}
    ),
    "Email Link Clicked": TrackRule(
        TouchpointKind.EMAIL,
        direction=Direction.OUTBOUND,
        details={"opened": True, "clicked": True},
    ),
    "Email Bounced": TrackRule(
        TouchpointKind.EMAIL, direction=Direction.OUTBOUND, details={"bounced": True}
    ),
    "Unsubscribed": TrackRule(
        TouchpointKind.EMAIL, direction=Direction.OUTBOUND, details={"unsubscribed": True}
    ),
    "Branch Visited": TrackRule(TouchpointKind.BRANCH_VISIT),
    "Application Opened": TrackRule(TouchpointKind.APP_SESSION, channel=Channel.APP),
}


@dataclass(frozen=True, slots=True)
class SegmentMapping:
    """How Segment messages become touchpoints; fixed at start from the settings."""

    track_rules: Mapping[str, TrackRule] = field(default_factory=lambda: dict(DEFAULT_TRACK_RULES))
    unmapped_tracks: UnmappedTracks = "channel_kind"
    server_channel: Channel = Channel.WEB
    consent_categories: Mapping[str, Channel] = field(
        default_factory=lambda: {c.value: c for c in Channel}
    )


class MalformedSegmentError(ValueError):
    """The body is not a Segment message or batch."""


def unpack_segment(
    document: object,
    endpoint: SegmentType | Literal["batch"],
    received_at: datetime,
    mapping: SegmentMapping,
    sizes: list[int],
) -> list[SubmittedEvent | Rejection | Ignored]:
    """Translate a decoded Segment request body into submissions, one per message.

    `sizes` holds the compact encoded size of each message, in order.
    """
    if not isinstance(document, Mapping):
        raise MalformedSegmentError("body must be a JSON object")
    if endpoint == "batch":
        items = document.get("batch")
        if not isinstance(items, list):
            raise MalformedSegmentError("'batch' must be a JSON array")
        if not items:
            raise MalformedSegmentError("body holds no events")
        shared_context = _mapping(document.get("context"))
        shared_integrations = _mapping(document.get("integrations"))
        batch_sent_at = document.get("sentAt")
    else:
        items = [{**document, "type": endpoint}]
        shared_context, shared_integrations, batch_sent_at = {}, {}, None
    out: list[SubmittedEvent | Rejection | Ignored] = []
    for item, size in zip(items, sizes, strict=True):
        if not isinstance(item, Mapping):
            reason = "a Segment message must be a JSON object"
            out.append(Rejection(None, (FieldError(path="$", reason=reason),), "not_an_object"))
            continue
        message = dict(item)
        message["context"] = _merged(shared_context, _mapping(item.get("context")))
        message["integrations"] = {**shared_integrations, **_mapping(item.get("integrations"))}
        message.setdefault("sentAt", batch_sent_at)
        out.append(translate_message(message, size, received_at, mapping))
    return out


def message_items(document: object, endpoint: SegmentType | Literal["batch"]) -> list[object]:
    """Return the messages of a body (for measuring their sizes), or [] when malformed."""
    if endpoint != "batch":
        return [document]
    items = document.get("batch") if isinstance(document, Mapping) else None
    return list(items) if isinstance(items, list) else []


def translate_message(
    message: Mapping[str, Any], size: int, received_at: datetime, mapping: SegmentMapping
) -> SubmittedEvent | Rejection | Ignored:
    """Translate one Segment message (context already merged) into a native touchpoint."""
    message_id = message.get("messageId")
    event_id = message_id if isinstance(message_id, str) and message_id else new_event_id()
    kind_of = message.get("type")
    # Checked as a string first: a JSON array or object cannot be looked up in a set.
    if not isinstance(kind_of, str) or kind_of not in SEGMENT_TYPES:
        reason = f"type must be one of {', '.join(sorted(SEGMENT_TYPES))}"
        return Rejection(event_id, (FieldError(path="type", reason=reason),), "unsupported_type")
    integrations = _mapping(message.get("integrations"))
    if not integrations.get("Clientela", integrations.get("All", True)):
        return Ignored(event_id, "disabled_by_integrations")
    if kind_of in ("group", "alias"):
        # Accounts and id aliases have no touchpoint; acknowledged so libraries do not retry.
        return Ignored(event_id, f"segment_{kind_of}")

    occurred, error = _event_time(message, received_at)
    if error is not None:
        return Rejection(event_id, (error,), "invalid")
    context = _mapping(message.get("context"))
    properties = _mapping(message.get("properties"))
    traits = _mapping(message.get("traits")) if kind_of == "identify" else {}
    channel = _context_channel(context, mapping)
    native: dict[str, Any] = {
        "event_id": event_id,
        "occurred_at": occurred.isoformat(),
        "direction": "inbound",
        "identifiers": _identifiers(message, context, traits),
        "traits": _scalars(traits, drop=frozenset({"email", "phone"})),
        "consent": _consent(context, mapping),
    }
    if kind_of == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name:
            reason = "a track call needs its event name"
            return Rejection(event_id, (FieldError(path="event", reason=reason),), "invalid")
        rule = mapping.track_rules.get(name)
        if rule is None:
            if mapping.unmapped_tracks == "ignore":
                return Ignored(event_id, "unmapped_track")
            if mapping.unmapped_tracks == "reject":
                reason = f"track event {name!r} is not mapped to a touchpoint kind"
                return Rejection(event_id, (FieldError(path="event", reason=reason),), "unmapped")
            rule = TrackRule(
                TouchpointKind.APP_SESSION if channel is Channel.APP else TouchpointKind.WEB_VISIT
            )
        native.update(_details(rule, properties, context, channel))
        native["properties"] = {"event": name, **_properties(properties, rule.kind)}
    elif kind_of == "identify":
        # A profile update, carried as a touchpoint of the channel it came through.
        kind = TouchpointKind.APP_SESSION if channel is Channel.APP else TouchpointKind.WEB_VISIT
        native.update(_details(TrackRule(kind), {}, context, channel))
        native["properties"] = {"segment_type": "identify"}
    elif kind_of == "page":
        native.update(_details(TrackRule(TouchpointKind.WEB_VISIT), properties, context, channel))
        native["properties"] = _page_properties(message, properties)
    else:  # screen
        rule = TrackRule(TouchpointKind.APP_SESSION, channel=Channel.APP)
        native.update(_details(rule, properties, context, channel))
        native["properties"] = _page_properties(message, properties)
    return SubmittedEvent(native, size)


def _event_time(
    message: Mapping[str, Any], received_at: datetime
) -> tuple[datetime, FieldError | None]:
    times: dict[str, datetime | None] = {}
    for name in ("originalTimestamp", "timestamp", "sentAt"):
        value = message.get(name)
        if value is None:
            times[name] = None
            continue
        parsed = _parse_time(value)
        if parsed is None:
            return received_at, FieldError(path=name, reason="is not an ISO 8601 date-time")
        times[name] = parsed
    client_time = times["originalTimestamp"] or times["timestamp"]
    return corrected_time(client_time, times["sentAt"], received_at), None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # The spec asks for UTC; a time without an offset is read as UTC rather than refused.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _context_channel(context: Mapping[str, Any], mapping: SegmentMapping) -> Channel:
    declared = context.get("channel")
    if declared == "browser":
        return Channel.WEB
    if declared == "mobile":
        return Channel.APP
    library = _mapping(context.get("library")).get("name")
    if isinstance(library, str):
        name = library.lower()
        if name in ("analytics.js", "analytics-next"):
            return Channel.WEB
        if any(word in name for word in _MOBILE_WORDS):
            return Channel.APP
    if _mapping(context.get("device")).get("type") in ("ios", "android"):
        return Channel.APP
    return mapping.server_channel


def _identifiers(
    message: Mapping[str, Any], context: Mapping[str, Any], traits: Mapping[str, Any]
) -> dict[str, Any]:
    context_traits = _mapping(context.get("traits"))
    ids: dict[str, Any] = {}
    for field_name, key in (("customer_id", "userId"), ("anonymous_id", "anonymousId")):
        value = message.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if value not in (None, ""):
            ids[field_name] = value
    for field_name in ("email", "phone"):
        value = traits.get(field_name, context_traits.get(field_name))
        if value not in (None, ""):
            ids[field_name] = value
    device = _mapping(context.get("device")).get("id")
    if device not in (None, ""):
        ids["device_id"] = device
    return ids


def _consent(context: Mapping[str, Any], mapping: SegmentMapping) -> list[dict[str, str]]:
    preferences = _mapping(_mapping(context.get("consent")).get("categoryPreferences"))
    changes = []
    for category, allowed in preferences.items():
        channel = mapping.consent_categories.get(str(category).strip().lower())
        if channel is not None and isinstance(allowed, bool):
            status = "opted_in" if allowed else "opted_out"
            changes.append({"channel": channel.value, "status": status})
    return changes


def _details(
    rule: TrackRule, props: Mapping[str, Any], context: Mapping[str, Any], channel: Channel
) -> dict[str, Any]:
    kind = rule.kind
    out: dict[str, Any] = {
        "kind": kind.value,
        "channel": (rule.channel or _KIND_CHANNEL.get(kind, channel)).value,
        "direction": (rule.direction.value if rule.direction else None)
        or _text(props.get("direction"))
        or "inbound",
    }
    details: dict[str, Any] | None = None
    if kind is TouchpointKind.SALE:
        amount = next(
            (props[k] for k in ("revenue", "total", "value") if props.get(k) is not None), None
        )
        details = {
            "order_id": _text(props.get("order_id")),
            "amount": _amount(amount),
            "currency": props.get("currency") or "USD",
            "items": [_line_item(p) for p in _list(props.get("products")) if isinstance(p, dict)],
        }
        out["sale"] = details
    elif kind is TouchpointKind.PHONE_CALL:
        details = {
            "duration_seconds": props.get("duration", 0),
            "outcome": props.get("outcome", "answered"),
            "reason": props.get("reason"),
        }
        out["call"] = details
    elif kind is TouchpointKind.EMAIL:
        details = {
            "subject": props.get("email_subject", props.get("subject")),
            "campaign_message_id": _text(props.get("campaign_message_id")),
        }
        out["email"] = details
    elif kind is TouchpointKind.BRANCH_VISIT:
        details = {
            "branch_id": _text(props.get("branch_id")),
            "purpose": props.get("purpose"),
            "duration_seconds": props.get("duration"),
        }
        out["branch_visit"] = details
    elif kind is TouchpointKind.WEB_VISIT:
        page = _mapping(context.get("page"))
        details = {
            "url": props.get("url") or page.get("url"),
            "referrer": props.get("referrer") or page.get("referrer") or None,
        }
        out["web_visit"] = details
    if details is not None:
        details.update(rule.details)
    return out


def _line_item(product: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sku": _text(product.get("sku") or product.get("product_id") or product.get("id")),
        "name": product.get("name"),
        "category": product.get("category"),
    }
    if product.get("quantity") is not None:
        item["quantity"] = _amount(product["quantity"])
    if product.get("price") is not None:
        item["unit_price"] = _amount(product["price"])
    return item


def _amount(value: object) -> object:
    # JSON numbers arrive as floats; their shortest repr is the decimal the sender wrote.
    if isinstance(value, float | int) and not isinstance(value, bool):
        return repr(value) if isinstance(value, float) else str(value)
    return value


def _text(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _properties(props: Mapping[str, Any], kind: TouchpointKind) -> dict[str, Any]:
    return _scalars(props, drop=_CONSUMED.get(kind, frozenset()))


def _page_properties(message: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: message[k] for k in ("name", "category") if isinstance(message.get(k), str)}
    out.update(_scalars(props, drop=_CONSUMED[TouchpointKind.WEB_VISIT]))
    return out


def _scalars(values: Mapping[str, Any], drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Keep scalar values; flatten nested objects one level ("address.city"); cap the count."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in drop or not isinstance(key, str) or not key:
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            out[key[:256]] = value
        elif isinstance(value, Mapping):
            for sub, inner in value.items():
                if isinstance(inner, str | int | float | bool):
                    out[f"{key}.{sub}"[:256]] = inner
        if len(out) >= _MAX_PROPERTIES:
            break
    return out


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge batch-level context under a message's own (the message wins, objects merge)."""
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = _merged(current, value)
        else:
            out[key] = value
    return out
