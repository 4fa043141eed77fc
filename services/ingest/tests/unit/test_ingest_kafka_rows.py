"""The records of accepted touchpoints: the headers the shared builder gives, per event."""

from __future__ import annotations

from collections.abc import Sequence

from clientela.ingest.adapters.outbound.kafka_publisher import KafkaTouchpointPublisher
from clientela.ingest.domain.touchpoints import RecordedTouchpoint
from clientela.shared import tracing
from clientela.shared.codec import HEADER_REFERS_TO_MESSAGE, contract_headers
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.kafka import Row

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Rows:
    """Keeps the rows it is asked to publish."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    async def publish_rows(self, rows: Sequence[Row]) -> None:
        self.rows.extend(rows)


async def test_each_record_carries_the_shared_headers_of_its_own_event() -> None:
    sink = Rows()
    events = [
        RecordedTouchpoint("e-1", "k1", b"{}", refers_to_message=False),
        RecordedTouchpoint("e-2", "k2", b"{}", refers_to_message=True),
    ]
    scope = {"type": "http", "headers": [(b"traceparent", PARENT)]}
    with tracing.request_context(scope):
        await KafkaTouchpointPublisher(sink, "touchpoints").publish(events, 1_700_000_000_123)
        trace = tracing.current()
    assert [(r[0], r[1], r[2]) for r in sink.rows] == [
        ("touchpoints", b"k1", b"{}"),
        ("touchpoints", b"k2", b"{}"),
    ]
    for row, event, flag in zip(sink.rows, events, (b"0", b"1"), strict=True):
        expected = contract_headers(TouchpointRecorded, event.event_id, 1_700_000_000_123, trace)
        assert row[3] == [*expected, (HEADER_REFERS_TO_MESSAGE, flag)]
    assert any(PARENT[3:35] in value for _, value in sink.rows[0][3])  # the caller's trace
