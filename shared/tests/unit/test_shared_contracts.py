"""Contracts: round trips, rejection of bad values, and the exported schemas being current."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from clientela.shared.codec import DecodeError, decode_event, encode_event
from clientela.shared.contracts import (
    ALL_TOPICS,
    EVENT_CONTRACTS,
    CampaignMessage,
    CampaignMessageEvent,
    Channel,
    CleanupPolicy,
    MessagePurpose,
    Tier,
    TierChanged,
    TierChangedEvent,
    TierMove,
    TouchpointRecorded,
    derived_event_id,
)
from clientela.shared.contracts.schema_export import render_schemas, stale_files

ROOT = Path(__file__).resolve().parents[3]


def sale(**overrides: Any) -> dict[str, Any]:
    """Return a valid sale touchpoint event as plain data."""
    event: dict[str, Any] = {
        "source": "pos",
        "occurred_at": "2026-11-01T10:00:00Z",
        "data": {
            "kind": "sale",
            "channel": "branch",
            "direction": "inbound",
            "identifiers": {"customer_id": "C1", "email": "ann@shop.test"},
            "agent": {"agent_id": "rep-7", "role": "sales_rep"},
            "cost": {"amount": "1.50", "currency": "EUR"},
            "sale": {
                "order_id": "O-1",
                "amount": "129.90",
                "currency": "EUR",
                "items": [
                    {"sku": "S1", "category": "shoes", "quantity": 1, "unit_price": "129.90"}
                ],
            },
        },
    }
    event["data"].update(overrides)
    return event


def test_touchpoint_round_trips_through_json_with_exact_decimals() -> None:
    event = TouchpointRecorded.model_validate(sale())
    decoded = decode_event(TouchpointRecorded, encode_event(event))
    assert decoded == event
    assert decoded.data.sale is not None
    assert decoded.data.sale.amount == Decimal("129.90")
    assert decoded.type == "touchpoint.recorded"
    assert decoded.data.identifiers.pairs() == [("customer_id", "C1"), ("email", "ann@shop.test")]


def test_every_kind_needs_its_own_details_and_no_others() -> None:
    with pytest.raises(ValidationError, match="needs its 'sale' details"):
        TouchpointRecorded.model_validate(sale(sale=None))
    with pytest.raises(ValidationError, match="do not belong"):
        TouchpointRecorded.model_validate(
            sale(call={"duration_seconds": 10, "outcome": "answered"})
        )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"identifiers": {}}, "at least one identifier"),
        ({"direction": "sideways"}, "direction"),
        ({"sale": {"order_id": "O", "amount": "-1", "currency": "EUR"}}, "greater than or equal"),
        ({"sale": {"order_id": "O", "amount": "1", "currency": "XYZ"}}, "ISO 4217"),
        ({"kind": "telepathy"}, "kind"),
    ],
)
def test_bad_values_are_rejected(overrides: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        TouchpointRecorded.model_validate(sale(**overrides))


def test_naive_timestamps_and_wrong_types_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TouchpointRecorded.model_validate({**sale(), "occurred_at": "2026-11-01T10:00:00"})
    with pytest.raises(ValidationError, match=r"touchpoint\.recorded"):
        TouchpointRecorded.model_validate({**sale(), "type": "tier.changed"})


def test_contracts_are_frozen_and_ignore_unknown_fields() -> None:
    event = TouchpointRecorded.model_validate({**sale(), "added_later": 1})
    with pytest.raises(ValidationError):
        event.source = "other"  # type: ignore[misc]
    assert "added_later" not in event.model_dump()


def test_decode_reports_why_a_record_is_bad() -> None:
    good = encode_event(TouchpointRecorded.model_validate(sale()))
    cases = {
        b"\xff\xfe not json": "undecodable",
        b"[1, 2]": "invalid",
        good.replace(b'"touchpoint.recorded"', b'"tier.changed"'): "unexpected_type",
        good.replace(b'"schema_version":1', b'"schema_version":9'): "unsupported_version",
        good.replace(b'"129.90"', b'"-5"'): "invalid",
    }
    for raw, code in cases.items():
        with pytest.raises(DecodeError) as caught:
            decode_event(TouchpointRecorded, raw)
        assert caught.value.code == code, raw
    with pytest.raises(DecodeError) as caught:
        decode_event(TouchpointRecorded, good, max_bytes=10)
    assert caught.value.code == "oversized"
    with pytest.raises(DecodeError) as caught:
        decode_event(TouchpointRecorded, good.replace(b'"amount":"129.90"', b'"amount":"-5"'))
    assert [e.path for e in caught.value.errors] == ["data.sale.amount"]


def test_public_events_round_trip() -> None:
    tier = TierChangedEvent(
        source="scoring",
        event_id=derived_event_id("tier.changed", "p1", "3"),
        data=TierChanged(
            profile_id="p1",
            profile_version=3,
            from_tier=Tier.B,
            to_tier=Tier.A,
            move=TierMove.UP,
            lifecycle="customer",
            predicted_value=812.5,
            model_version="m1",
            reasons=[{"code": "predicted_value", "value": 812.5}],
        ),
    )
    assert decode_event(TierChangedEvent, encode_event(tier)) == tier
    message = CampaignMessageEvent(
        source="campaign",
        data=CampaignMessage(
            message_id="m1",
            profile_id="p1",
            campaign_id="welcome-to-a",
            channel=Channel.EMAIL,
            variant="a-welcome",
            purpose=MessagePurpose.LOYALTY,
            tier=Tier.A,
            trigger_event_id=tier.event_id,
            expires_at=datetime(2026, 12, 1, tzinfo=UTC),
        ),
    )
    assert decode_event(CampaignMessageEvent, encode_event(message)) == message


def test_derived_ids_are_deterministic_uuid5() -> None:
    import uuid

    from clientela.shared.contracts.base import EVENT_ID_NAMESPACE

    assert derived_event_id("a", "b") == derived_event_id("a", "b")
    for parts in (("a", "b"), ("tier.changed", "p-1", "7"), ("é", "")):
        assert derived_event_id(*parts) == str(uuid.uuid5(EVENT_ID_NAMESPACE, "\x1f".join(parts)))
    assert derived_event_id("a", "b") != derived_event_id("ab")


def test_topic_registry_is_consistent() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert all(n.endswith((".v1",)) for n in names)
    by_name = {t.name: t for t in ALL_TOPICS}
    assert by_name["profiles.v1"].cleanup_policy is CleanupPolicy.COMPACT
    assert by_name["scores.v1"].cleanup_policy is CleanupPolicy.COMPACT
    assert {t.name for t in ALL_TOPICS if t.public} == {"tier-changes.v1", "campaign-messages.v1"}
    produced = {t.contract for t in ALL_TOPICS if t.contract is not None}
    assert set(EVENT_CONTRACTS) <= produced


def test_exported_schemas_are_current() -> None:
    stale = stale_files(ROOT / "docs" / "contracts")
    assert not stale, f"run `make contracts`: stale {stale}"


def test_public_schemas_stand_alone() -> None:
    schemas = render_schemas()
    for name in ("tier.changed.v1.json", "campaign.message.v1.json"):
        text = schemas[name]
        assert '"$ref": "#/$defs/' in text  # every reference resolves inside the file
        assert "http" not in text.replace("https://json-schema.org", "").replace(
            "https://clientela.dev", ""
        )
