"""The one outgoing-event path: an encoded event becomes the same record as its model would."""

from __future__ import annotations

from clientela.shared.codec import (
    HEADER_SCHEMA_VERSION,
    HEADER_TYPE,
    EncodedEvent,
    OutgoingEvent,
    header,
    to_record,
)
from clientela.shared.contracts import TouchpointRecorded, topics


def touchpoint() -> TouchpointRecorded:
    """Return a small valid touchpoint event."""
    return TouchpointRecorded.model_validate(
        {
            "source": "test",
            "causation_id": "cause-1",
            "data": {
                "kind": "web_visit",
                "channel": "web",
                "direction": "inbound",
                "identifiers": {"anonymous_id": "a1"},
                "web_visit": {},
            },
        }
    )


def test_an_encoded_event_is_the_record_its_model_makes() -> None:
    event = touchpoint()
    encoded = EncodedEvent.of(OutgoingEvent(topics.TOUCHPOINTS, "k", event, 1_700_000_000_000))
    assert encoded.record("t") == to_record("t", "k", event, 1_700_000_000_000)
    assert encoded.event_type == TouchpointRecorded.EVENT_TYPE


def test_type_and_schema_version_come_from_the_contract_class() -> None:
    event = touchpoint()
    record = EncodedEvent(
        topics.TOUCHPOINTS, "k", TouchpointRecorded, event.event_id, b"{}"
    ).record("t")
    assert header(record.headers, HEADER_TYPE) == TouchpointRecorded.EVENT_TYPE.encode()
    assert (
        header(record.headers, HEADER_SCHEMA_VERSION)
        == str(TouchpointRecorded.SCHEMA_VERSION).encode()
    )


def test_a_tombstone_has_no_value_and_no_headers() -> None:
    record = EncodedEvent(topics.PROFILES, "p-1").record("profiles")
    assert (record.key, record.value, record.headers) == (b"p-1", None, [])
    assert EncodedEvent(topics.PROFILES, "p-1").event_type is None
