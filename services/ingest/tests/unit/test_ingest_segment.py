"""Segment-spec messages (documented shapes) translated into touchpoints."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clientela.ingest.config import IngestSettings
from clientela.ingest.domain.policy import IntakePolicy
from clientela.ingest.domain.segment import (
    MalformedSegmentError,
    SegmentMapping,
    message_items,
    unpack_segment,
)
from clientela.ingest.domain.touchpoints import (
    Ignored,
    IntakeContext,
    RecordedTouchpoint,
    Rejection,
    SubmittedEvent,
    record_touchpoint,
)
from clientela.shared.contracts import TouchpointRecorded

RECEIVED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CONTEXT = IntakeContext("segment-web", RECEIVED, 1)

# The Segment spec's own examples (Order Completed, identify, page), lightly trimmed.
ORDER_COMPLETED: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "019mr8mf4r",
    "anonymousId": "507f191e810c19729de860ea",
    "messageId": "ajs-next-0b1d2b2b1a0ec1a3c0e7b8c1d2e3f4a5",
    "timestamp": "2025-03-01T11:58:00.000Z",
    "context": {
        "ip": "8.8.8.8",
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "page": {"url": "https://www.example.com/checkout", "referrer": "https://google.com/"},
        "traits": {"email": " Peter@Example.com"},
    },
    "properties": {
        "checkout_id": "fksdjfsdjfisjf9sdfjsd9f",
        "order_id": "50314b8e9bcf000000000000",
        "affiliation": "Google Store",
        "total": 27.50,
        "subtotal": 22.50,
        "revenue": 25.00,
        "shipping": 3,
        "tax": 2,
        "discount": 2.5,
        "coupon": "hasbros",
        "currency": "usd",
        "products": [
            {
                "product_id": "507f1f77bcf86cd799439011",
                "sku": "45790-32",
                "name": "Monopoly: 3rd Edition",
                "price": 19,
                "quantity": 1,
                "category": "Games",
            },
            {"product_id": "505bd76785ebb509fc183733", "name": "Uno Card Game", "price": 3},
        ],
    },
    "integrations": {},
}
IDENTIFY: dict[str, Any] = {
    "type": "identify",
    "userId": "97980cfea0067",
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "timestamp": "2025-03-01T11:59:00.000Z",
    "traits": {
        "name": "Peter Gibbons",
        "email": "peter@example.com",
        "plan": "premium",
        "logins": 5,
        "address": {"street": "6th St", "city": "San Francisco", "postalCode": "94103"},
    },
    "context": {
        "library": {"name": "analytics-ios", "version": "4.1.0"},
        "device": {"id": "B5372DB0-C21E-11E4-8DFC-AA07A5B093DB", "type": "ios"},
        "consent": {"categoryPreferences": {"Email": True, "SMS": False, "Advertising": False}},
    },
}
PAGE: dict[str, Any] = {
    "type": "page",
    "name": "Home",
    "anonymousId": "507f191e810c19729de860ea",
    "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
    "properties": {
        "title": "Welcome | Initech",
        "url": "http://www.example.com",
        "path": "/",
        "referrer": "https://google.com/",
    },
    "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
}


def translate(
    document: Any, endpoint: Any = "batch", mapping: SegmentMapping | None = None
) -> list[Any]:
    sizes = [len(json.dumps(m)) for m in message_items(document, endpoint)]
    return unpack_segment(document, endpoint, RECEIVED, mapping or SegmentMapping(), sizes)


def recorded(item: Any) -> TouchpointRecorded:
    assert isinstance(item, SubmittedEvent), item
    result = record_touchpoint(item, CONTEXT, IntakePolicy())
    assert isinstance(result, RecordedTouchpoint), result
    return result.event()


def test_order_completed_becomes_a_sale_with_revenue_and_items() -> None:
    (item,) = translate(ORDER_COMPLETED, "track")
    event = recorded(item)
    assert event.event_id == ORDER_COMPLETED["messageId"]
    assert event.occurred_at == datetime(2025, 3, 1, 11, 58, tzinfo=UTC)
    data = event.data
    assert (data.kind.value, data.channel.value, data.direction.value) == (
        "sale",
        "web",
        "inbound",
    )
    ids = data.identifiers
    assert (ids.customer_id, ids.anonymous_id, ids.email) == (
        "019mr8mf4r",
        "507f191e810c19729de860ea",
        "peter@example.com",
    )
    assert data.sale is not None
    assert (str(data.sale.amount), data.sale.currency) == ("25.0", "USD")
    assert [(i.sku, str(i.quantity), str(i.unit_price)) for i in data.sale.items] == [
        ("45790-32", "1", "19"),
        ("505bd76785ebb509fc183733", "1", "3"),
    ]
    assert data.properties["event"] == "Order Completed"
    assert data.properties["coupon"] == "hasbros"
    assert "products" not in data.properties


def test_identify_carries_traits_consent_and_device() -> None:
    (item,) = translate(IDENTIFY, "identify")
    data = recorded(item).data
    assert data.kind.value == "app_session"
    assert data.channel.value == "app"
    assert data.identifiers.customer_id == "97980cfea0067"
    assert data.identifiers.email == "peter@example.com"
    assert data.identifiers.device_id == "B5372DB0-C21E-11E4-8DFC-AA07A5B093DB"
    assert data.traits["plan"] == "premium"
    assert data.traits["address.city"] == "San Francisco"
    assert "email" not in data.traits
    assert [(c.channel.value, c.status.value) for c in data.consent] == [
        ("email", "opted_in"),
        ("sms", "opted_out"),
    ]
    assert data.properties == {"segment_type": "identify"}


def test_page_becomes_a_web_visit() -> None:
    (item,) = translate(PAGE, "page")
    data = recorded(item).data
    assert data.kind.value == "web_visit"
    assert data.web_visit is not None
    assert str(data.web_visit.url) == "http://www.example.com/"
    assert str(data.web_visit.referrer) == "https://google.com/"
    assert data.properties["name"] == "Home"
    assert data.properties["title"] == "Welcome | Initech"


def test_batch_context_and_integrations_merge_into_each_message() -> None:
    call = {
        "type": "track",
        "event": "Call Completed",
        "userId": "u-7",
        "properties": {"duration": 320, "outcome": "resolved"},
        "context": {"library": {"version": "9"}},
    }
    body = {
        "batch": [call, {**PAGE, "integrations": {"Clientela": False}}],
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
        "integrations": {"All": True},
        "writeKey": "not-used-here",
    }
    first, second = translate(body)
    data = recorded(first).data
    assert (data.kind.value, data.channel.value) == ("phone_call", "phone")
    assert data.call is not None
    assert (data.call.duration_seconds, data.call.outcome.value) == (320, "resolved")
    assert isinstance(second, Ignored)
    assert second.reason == "disabled_by_integrations"


def test_sent_at_corrects_client_clock_skew() -> None:
    # The client's clock runs one hour ahead: its timestamps and sentAt both carry the error.
    body = {
        "batch": [{**ORDER_COMPLETED, "timestamp": "2025-03-01T12:58:00Z"}],
        "sentAt": "2025-03-01T13:00:00Z",
    }
    (item,) = translate(body)
    assert recorded(item).occurred_at == RECEIVED - timedelta(minutes=2)


def test_original_timestamp_wins_over_timestamp() -> None:
    message = {**PAGE, "originalTimestamp": "2025-03-01T10:00:00Z", "timestamp": "2025-03-02"}
    (item,) = translate(message, "page")
    assert recorded(item).occurred_at == datetime(2025, 3, 1, 10, tzinfo=UTC)


def test_group_and_alias_are_acknowledged_not_recorded() -> None:
    body = {
        "batch": [
            {"type": "alias", "previousId": "a", "userId": "b"},
            {"type": "group", "groupId": "g", "userId": "b"},
            {"type": "nonsense", "userId": "b"},
        ]
    }
    alias, group, nonsense = translate(body)
    assert isinstance(alias, Ignored)
    assert isinstance(group, Ignored)
    assert isinstance(nonsense, Rejection)
    assert nonsense.errors[0].path == "type"


def test_track_mapping_is_configurable() -> None:
    settings = IngestSettings(
        segment_track_kinds={
            "Branch Appointment Kept": {"kind": "branch_visit", "direction": "outbound"},
            "Order Completed": "sale",
        },
        segment_unmapped_tracks="reject",
    )
    mapping = settings.segment_mapping()
    visit = {
        "type": "track",
        "event": "Branch Appointment Kept",
        "userId": "u-1",
        "properties": {"branch_id": "br-9", "purpose": "mortgage"},
    }
    unknown = {"type": "track", "event": "Button Clicked", "userId": "u-1"}
    first, second = translate({"batch": [visit, unknown]}, mapping=mapping)
    data = recorded(first).data
    assert (data.kind.value, data.channel.value, data.direction.value) == (
        "branch_visit",
        "branch",
        "outbound",
    )
    assert data.branch_visit is not None
    assert data.branch_visit.branch_id == "br-9"
    assert isinstance(second, Rejection)
    assert second.code == "unmapped"


def test_unmapped_tracks_become_channel_visits_by_default() -> None:
    (item,) = translate({"type": "track", "event": "Video Played", "anonymousId": "a-1"}, "track")
    data = recorded(item).data
    assert data.kind.value == "web_visit"
    assert data.properties == {"event": "Video Played"}


def test_invalid_messages_are_rejected_with_paths() -> None:
    bad_time = {**PAGE, "timestamp": "yesterday"}
    no_event = {"type": "track", "userId": "u"}
    first, second = translate({"batch": [bad_time, no_event]})
    assert isinstance(first, Rejection)
    assert first.errors[0].path == "timestamp"
    assert isinstance(second, Rejection)
    assert second.errors[0].path == "event"


@pytest.mark.parametrize("kind", [[], {}, ["track"], 5, None, True])
def test_a_type_that_is_not_a_string_is_rejected_on_the_type_field(kind: Any) -> None:
    (item,) = translate({"batch": [{"type": kind, "userId": "u-1", "event": "x"}]})
    assert isinstance(item, Rejection)
    assert item.code == "unsupported_type"
    assert item.errors[0].path == "type"


@pytest.mark.parametrize("products", [5, 2.5, True, "abc", {"sku": "x"}])
def test_products_that_are_not_a_list_give_a_sale_without_items(products: Any) -> None:
    properties = {"order_id": "O-1", "revenue": 10, "products": products}
    message = {**ORDER_COMPLETED, "properties": properties}
    (item,) = translate({"batch": [message]})
    sale = recorded(item).data.sale
    assert sale is not None
    assert sale.items == []


@pytest.mark.parametrize("body", [[], {"batch": "x"}, {"batch": []}])
def test_malformed_batches_are_refused(body: Any) -> None:
    with pytest.raises(MalformedSegmentError):
        translate(body)
