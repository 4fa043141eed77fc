"""The raw-topic use case: translate records, accept the valid ones, dead-letter the rest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from clientela.ingest.application.accept_touchpoints import IntakeReport, Outcome, TouchpointIntake
from clientela.ingest.application.ports import DeadLetterPublisher
from clientela.ingest.domain.raw_record import RawRecord, translate_record
from clientela.ingest.domain.touchpoints import IntakeContext
from clientela.shared.contracts import DeadLetter, DeadLetterEvent, FieldError, derived_event_id

_REASONS = {
    "empty": "record has no value",
    "oversized": "record exceeds the size limit",
    "undecodable": "record value is not JSON",
    "not_an_object": "record value is not a JSON object",
    "invalid_cloudevent": "record is not a valid CloudEvent",
    "invalid_phone": "touchpoint has a phone number that cannot be read",
    "future_timestamp": "touchpoint occurs too far in the future",
}


def dead_letter(
    record: RawRecord, consumer: str, code: str, errors: Sequence[FieldError]
) -> DeadLetterEvent:
    """Return the dead letter of a record: reason, field errors, original bytes and position."""
    return DeadLetterEvent(
        # The same record always yields the same dead letter id, so a redelivery is a repeat.
        event_id=derived_event_id(
            "dead-letter", consumer, record.topic, str(record.partition), str(record.offset)
        ),
        source=consumer,
        data=DeadLetter.of_record(
            reason_code=code,
            reason=_REASONS.get(code, "record is not a valid touchpoint"),
            errors=errors,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            consumer=consumer,
            key=record.key,
            value=record.value,
            headers=record.headers,
        ),
    )


async def relay_raw_records(
    records: Sequence[RawRecord],
    intake: TouchpointIntake,
    dead_letters: DeadLetterPublisher,
    *,
    consumer: str,
    received_at: datetime,
    accepted_at_ms: int,
) -> IntakeReport:
    """Accept a batch of raw records and dead-letter those that cannot be accepted.

    Returns only after the accepted events and the dead letters are acknowledged; raises
    otherwise, so the caller does not commit the batch and it is delivered again (accepted
    events then read as duplicates and are not republished).
    """
    max_bytes = intake.policy.max_event_bytes
    submissions = [translate_record(r, max_bytes) for r in records]
    context = IntakeContext(consumer, received_at, accepted_at_ms)
    report = await intake.accept(submissions, context, enforce_limit=False)
    dead = [
        dead_letter(records[o.index], consumer, o.code or "invalid", o.errors)
        for o in report.outcomes
        if o.status is Outcome.REJECTED
    ]
    if dead:
        await dead_letters.publish(dead)
    return report
