"""Use case: turn tier changes into campaign decisions once the person's contact is known."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from clientela.campaign.application.ports import OutgoingMessage, ReceivedTrigger, UnitOfWork
from clientela.campaign.domain.catalog import CampaignCatalog
from clientela.campaign.domain.decision import DecisionPolicy, TierTrigger, decide
from clientela.campaign.domain.model import Contact, Decision, Outcome
from clientela.shared.contracts import (
    CampaignMessage,
    CampaignMessageEvent,
    ProfileChangedEvent,
    utc_now,
)

log = logging.getLogger(__name__)

SOURCE = "campaign"


@dataclass(frozen=True, slots=True)
class CampaignInputs:
    """One consumed batch: profile changes and tier changes, in arrival order."""

    profile_changes: Sequence[ProfileChangedEvent] = ()
    tier_changes: Sequence[ReceivedTrigger] = ()


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did: triggers decided, decisions recorded, messages staged."""

    triggers_decided: int
    decisions: int
    messages: int


class CampaignDecider:
    """Decides campaigns for tier changes, waiting for the contact version each one needs."""

    def __init__(
        self,
        catalog: CampaignCatalog,
        policy: DecisionPolicy,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._catalog = catalog
        self._policy = policy
        self._clock = clock

    async def handle_batch(self, inputs: CampaignInputs, uow: UnitOfWork) -> BatchOutcome:
        """Apply one batch in one transaction; a redelivered batch changes nothing."""
        now = self._clock()
        async with uow:
            fresh = await uow.claim_new(
                [e.event_id for e in inputs.profile_changes]
                + [t.event_id for t in inputs.tier_changes]
            )
            contacts = _latest_contacts(e for e in inputs.profile_changes if e.event_id in fresh)
            new_triggers = list(
                {t.event_id: t for t in inputs.tier_changes if t.event_id in fresh}.values()
            )
            await uow.contacts.save_newer(list(contacts.values()), now)
            await uow.triggers.add(new_triggers, now)

            new_ids = {t.event_id for t in new_triggers}
            # Triggers that waited for a contact are re-examined when that contact arrives.
            waiting = await uow.triggers.pending_for(contacts.keys()) if contacts else []
            candidates = [t for t in waiting if t.event_id not in new_ids] + new_triggers
            known = (
                await uow.contacts.get_many({t.profile_id for t in candidates})
                if candidates
                else {}
            )

            decided: list[ReceivedTrigger] = []
            decisions: list[tuple[Decision, ReceivedTrigger]] = []
            enabled = self._catalog.enabled()
            for trigger in candidates:
                contact = known.get(trigger.profile_id)
                if contact is None or contact.version < trigger.required_profile_version:
                    continue  # the profile state behind this move has not arrived yet
                decided.append(trigger)
                tier_trigger = TierTrigger(trigger.event_id, trigger.event.data)
                decisions.extend(
                    (d, trigger) for d in decide(tier_trigger, contact, enabled, self._policy, now)
                )

            recorded = await uow.decisions.add([d for d, _ in decisions])
            messages = [
                _message(d, trigger)
                for d, trigger in decisions
                if d.outcome is Outcome.SENT and d.decision_id in recorded
            ]
            await uow.triggers.mark_decided([t.event_id for t in decided], now)
            await uow.stage(messages)
            await uow.commit()
        if decided:
            log.info(
                "decided %d trigger(s): %d decision(s), %d message(s); %d trigger(s) wait",
                len(decided),
                len(recorded),
                len(messages),
                len(candidates) - len(decided),
            )
        return BatchOutcome(len(decided), len(recorded), len(messages))


def _latest_contacts(events: Iterable[ProfileChangedEvent]) -> dict[str, Contact]:
    latest: dict[str, Contact] = {}
    for event in events:
        contact = Contact.from_profile(event.data)
        current = latest.get(contact.profile_id)
        if current is None or contact.version > current.version:
            latest[contact.profile_id] = contact
    return latest


def _message(decision: Decision, trigger: ReceivedTrigger) -> OutgoingMessage:
    assert decision.channel is not None  # only sent decisions become messages
    cause = trigger.event
    event = CampaignMessageEvent(
        event_id=decision.decision_id,
        occurred_at=decision.decided_at,
        source=SOURCE,
        correlation_id=cause.correlation_id or cause.event_id,
        causation_id=cause.event_id,
        data=CampaignMessage(
            message_id=decision.decision_id,
            profile_id=decision.profile_id,
            campaign_id=decision.campaign_id,
            channel=decision.channel,
            variant=decision.variant,
            purpose=decision.purpose,
            tier=decision.tier,
            trigger_event_id=decision.trigger_event_id,
            expires_at=decision.expires_at,
            reasons=list(decision.reasons),
        ),
    )
    return OutgoingMessage(event, trigger.accepted_at_ms)
