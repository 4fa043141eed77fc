"""Use case: turn what happens to people into campaign decisions, messages and learning."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from clientela.campaign.application.catalog import LiveCatalog
from clientela.campaign.application.ports import (
    ContactLedger,
    ContactRequest,
    Conversion,
    Received,
    UnitOfWork,
)
from clientela.campaign.domain.decision import (
    CapRequest,
    DecisionPolicy,
    Deferral,
    decide,
    settle,
)
from clientela.campaign.domain.economics import PosteriorKey, posterior_key
from clientela.campaign.domain.model import Contact, Decision, Outcome, Trigger
from clientela.campaign.domain.responses import (
    Purchase,
    Reaction,
    purchase_between,
    reaction_of,
)
from clientela.campaign.domain.triggers import (
    Cause,
    contact_from_profile,
    contact_with_scores,
    inactivity_trigger,
    profile_triggers,
    ready,
    score_triggers,
    tier_trigger,
)
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    CampaignMessage,
    CampaignMessageEvent,
    ProfileChangedEvent,
    ScoresUpdatedEvent,
    TierChangedEvent,
    TouchpointRecorded,
    utc_now,
)
from clientela.shared.contracts.topics import CAMPAIGN_MESSAGES
from clientela.shared.tracing import TraceContext

log = logging.getLogger(__name__)

SOURCE = "campaign"


@dataclass(frozen=True, slots=True)
class CampaignInputs:
    """One consumed batch, split by contract, in arrival order."""

    profile_changes: Sequence[Received[ProfileChangedEvent]] = ()
    tier_changes: Sequence[Received[TierChangedEvent]] = ()
    scores: Sequence[Received[ScoresUpdatedEvent]] = ()
    touchpoints: Sequence[Received[TouchpointRecorded]] = ()


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did."""

    triggers_decided: int = 0
    decisions: int = 0
    messages: int = 0
    deferred: int = 0
    responses: int = 0
    conversions: int = 0


@dataclass(frozen=True, slots=True)
class ResponseSettings:
    """How responses are attributed."""

    attribution_window: timedelta = timedelta(days=14)
    high_potential_threshold: float = 0.7


@dataclass(slots=True)
class _Decided:
    triggers: list[str] = field(default_factory=list)
    deferred: dict[str, datetime] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)
    messages: int = 0


class CampaignDecider:
    """Decides campaigns for triggers, learns from responses, measures conversions."""

    def __init__(
        self,
        catalog: LiveCatalog,
        policy: DecisionPolicy,
        ledger: ContactLedger,
        clock: Callable[[], datetime] = utc_now,
        responses: ResponseSettings | None = None,
    ) -> None:
        self._catalog = catalog
        self._policy = policy
        self._ledger = ledger
        self._clock = clock
        self._responses = responses or ResponseSettings()

    async def handle_batch(self, inputs: CampaignInputs, uow: UnitOfWork) -> BatchOutcome:
        """Apply one batch in one transaction; a redelivered batch changes nothing."""
        now = self._clock()
        async with uow:
            fresh = await uow.claim_new(
                [r.event.event_id for r in inputs.profile_changes]
                + [r.event.event_id for r in inputs.scores]
                + [r.event.event_id for r in inputs.tier_changes]
                + [r.event.event_id for r in inputs.touchpoints]
            )
            profiles = [r for r in inputs.profile_changes if r.event.event_id in fresh]
            scores = [r for r in inputs.scores if r.event.event_id in fresh]
            touched = {r.event.data.profile_id for r in profiles} | {
                r.event.data.profile_id for r in scores
            }
            known = await uow.contacts.get_many(touched) if touched else {}
            current = dict(known)
            triggers: list[Trigger] = []
            profile_updates: dict[str, Contact] = {}
            score_updates: dict[str, Contact] = {}
            purchases: list[Purchase] = []
            for r in sorted(profiles, key=lambda r: r.event.data.version):
                pid = r.event.data.profile_id
                before = current.get(pid)
                if before is not None and before.version >= r.event.data.version:
                    continue  # an older profile version never overwrites a newer one
                after = contact_from_profile(r.event.data, before)
                triggers += profile_triggers(_cause(r), before, after)
                purchase = purchase_between(before, after)
                if purchase is not None:
                    purchases.append(purchase)
                current[pid] = profile_updates[pid] = after
            for s in sorted(scores, key=lambda s: s.event.data.profile_version):
                pid = s.event.data.profile_id
                before = current.get(pid)
                if before is not None and before.scored_version > s.event.data.profile_version:
                    continue
                after = contact_with_scores(s.event.data, before)
                triggers += score_triggers(
                    _cause(s), before, after, self._responses.high_potential_threshold
                )
                current[pid] = score_updates[pid] = after
            await uow.contacts.save_profiles(list(profile_updates.values()), now)
            await uow.contacts.save_scores(list(score_updates.values()), now)
            triggers += [
                tier_trigger(
                    r.event.event_id,
                    r.event.data,
                    r.event.occurred_at,
                    r.event.correlation_id,
                    r.accepted_at_ms,
                    r.trace,
                )
                for r in inputs.tier_changes
                if r.event.event_id in fresh
            ]
            triggers = list({t.event_id: t for t in triggers}.values())

            responses, conversions = await self._track(
                uow,
                [r for r in inputs.touchpoints if r.event.event_id in fresh],
                purchases,
                now,
            )

            new_ids = {t.event_id for t in triggers}
            # Triggers that waited for a person's data are looked at again when it arrives.
            waiting = await uow.triggers.pending_for(touched) if touched else []
            stored = [t for t in waiting if t.event_id not in new_ids]
            done = await self._decide(uow, stored, triggers, now, current)
            await uow.commit()
        if done.triggers or done.deferred:
            log.info(
                "decided %d trigger(s): %d decision(s), %d message(s), %d deferred",
                len(done.triggers),
                len(done.recorded),
                done.messages,
                len(done.deferred),
            )
        return BatchOutcome(
            len(done.triggers),
            len(done.recorded),
            done.messages,
            len(done.deferred),
            responses,
            conversions,
        )

    async def sweep(self, uow: UnitOfWork, limit: int = 500) -> BatchOutcome:
        """Decide deferred triggers whose time has come and find people gone quiet."""
        now = self._clock()
        async with uow:
            triggers = await uow.triggers.due(now, limit)
            fresh: list[Trigger] = []
            for days in sorted(self._catalog.inactivity_days(now)):
                for contact in await uow.contacts.inactive(now - timedelta(days=days), days, limit):
                    trigger = inactivity_trigger(contact, days, now)
                    if trigger is not None:
                        fresh.append(trigger)
            done = await self._decide(uow, triggers, fresh, now, {})
            await uow.commit()
        return BatchOutcome(
            len(done.triggers), len(done.recorded), done.messages, len(done.deferred)
        )

    async def _track(
        self,
        uow: UnitOfWork,
        touchpoints: Sequence[Received[TouchpointRecorded]],
        bought: Sequence[Purchase],
        now: datetime,
    ) -> tuple[int, int]:
        window = self._responses.attribution_window
        reactions = [
            reaction
            for r in touchpoints
            if (reaction := reaction_of(r.event.data, r.event.occurred_at)) is not None
        ]
        refs = await uow.decisions.refs({x.message_id for x in reactions}) if reactions else {}
        responded: set[str] = set()
        conversions: dict[str, Conversion] = {}
        complaints: dict[str, datetime] = {}
        for x in reactions:
            ref = refs.get(x.message_id)
            if ref is None:
                continue  # not a message of this service, or an erased decision
            if x.reaction is not Reaction.RESPONSE:
                complaints[ref.profile_id] = max(
                    x.occurred_at, complaints.get(ref.profile_id, x.occurred_at)
                )
                continue
            if (
                ref.outcome is Outcome.SENT
                and ref.decided_at <= x.occurred_at <= ref.decided_at + window
            ):
                responded.add(ref.decision_id)
                if x.revenue and not ref.converted:
                    conversions[ref.decision_id] = Conversion(
                        ref.decision_id, x.occurred_at, x.revenue
                    )
        if complaints:
            await uow.contacts.save_complaints(complaints, now)

        if bought:
            since = min(p.at for p in bought) - window
            open_refs = await uow.decisions.open_for_conversion(
                {p.profile_id for p in bought}, since
            )
            for p in bought:
                for ref in open_refs:
                    if ref.profile_id != p.profile_id or ref.decision_id in conversions:
                        continue
                    if ref.decided_at <= p.at <= ref.decided_at + window:
                        conversions[ref.decision_id] = Conversion(ref.decision_id, p.at, p.revenue)
                        refs[ref.decision_id] = ref
                        if ref.outcome is Outcome.SENT:
                            responded.add(ref.decision_id)
        await uow.decisions.record_conversions(list(conversions.values()))
        if responded:
            missing = responded - refs.keys()
            if missing:
                refs.update(await uow.decisions.refs(missing))
            newly = await uow.decisions.record_responses(responded, now)
            cells: Counter[PosteriorKey] = Counter()
            for decision_id in newly:
                ref = refs[decision_id]
                if ref.channel is not None:
                    cells[posterior_key(ref.campaign_id, ref.channel, ref.tier, ref.segment)] += 1
            await uow.evidence.add({}, cells)
            return len(newly), len(conversions)
        return 0, len(conversions)

    async def _decide(
        self,
        uow: UnitOfWork,
        stored: Sequence[Trigger],
        new: Sequence[Trigger],
        now: datetime,
        current: Mapping[str, Contact],
    ) -> _Decided:
        """Decide the stored and the new triggers whose person is known well enough.

        New triggers are stored at the end with the state they reached (one insert, no
        update); a new trigger cannot have decisions yet, since the inbox let it through once.
        """
        done = _Decided()
        candidates = [*stored, *new]
        if not candidates:
            return done
        missing = {t.profile_id for t in candidates} - current.keys()
        known = {**current, **(await uow.contacts.get_many(missing) if missing else {})}
        runnable = [t for t in candidates if ready(t, known.get(t.profile_id))]
        if not runnable:
            await uow.triggers.add(new, now)
            return done
        campaigns = self._catalog.active(now)
        new_ids = {t.event_id for t in new}
        old_ids = [t.event_id for t in runnable if t.event_id not in new_ids]
        taken = await uow.decisions.decided(old_ids) if old_ids else set()
        ids = [c.id for c in campaigns]
        evidence = await uow.evidence.counts(ids) if ids else {}
        budgeted = [c for c in campaigns if c.budget is not None]
        spent = await uow.budgets.spent([c.id for c in budgeted]) if budgeted else {}
        remaining = {
            c.id: float((c.budget or Decimal(0)) - spent.get(c.id, Decimal(0))) for c in budgeted
        }

        finals: list[tuple[Decision, Trigger]] = []
        requests: list[tuple[CapRequest, Trigger]] = []
        for trigger in runnable:
            contact = known[trigger.profile_id]
            open_campaigns = [c for c in campaigns if (c.id, trigger.event_id) not in taken]
            deferred_until: datetime | None = None
            for plan in decide(
                trigger, contact, open_campaigns, self._policy, evidence, now, remaining
            ):
                if isinstance(plan, Deferral):
                    deferred_until = min(deferred_until or plan.until, plan.until)
                elif isinstance(plan, CapRequest):
                    requests.append((plan, trigger))
                    if plan.draft.campaign_id in remaining and plan.alternatives:
                        # Hold the dearest alternative until the ledger answers: never overspend.
                        remaining[plan.draft.campaign_id] -= max(a.cost for a in plan.alternatives)
                else:
                    finals.append((plan, trigger))
            if deferred_until is not None:
                done.deferred[trigger.event_id] = deferred_until
            else:
                done.triggers.append(trigger.event_id)

        grants = (
            await self._ledger.reserve(
                [
                    ContactRequest(r.draft.decision_id, [list(c) for c in r.counters])
                    for r, _ in requests
                ]
            )
            if requests
            else []
        )
        finals += [
            (settle(r, grant.granted, grant.blocked), trigger)
            for (r, trigger), grant in zip(requests, grants, strict=True)
        ]
        done.recorded = await uow.decisions.add([d for d, _ in finals])
        sent = [
            (d, t)
            for d, t in finals
            if d.outcome is Outcome.SENT and d.decision_id in done.recorded
        ]
        sends: Counter[PosteriorKey] = Counter()
        spend: dict[str, Decimal] = {}
        for d, _ in sent:
            assert d.channel is not None
            sends[posterior_key(d.campaign_id, d.channel, d.tier, d.segment)] += 1
            spend[d.campaign_id] = spend.get(d.campaign_id, Decimal(0)) + Decimal(str(d.cost))
        await uow.evidence.add(sends, {})
        await uow.budgets.add({k: v for k, v in spend.items() if k in remaining})
        await uow.triggers.add(
            new,
            now,
            decided=[t for t in done.triggers if t in new_ids],
            deferred={t: at for t, at in done.deferred.items() if t in new_ids},
        )
        await uow.triggers.mark_decided([t for t in done.triggers if t not in new_ids], now)
        await uow.triggers.defer({t: at for t, at in done.deferred.items() if t not in new_ids})
        await uow.stage([_message(d, t) for d, t in sent])
        done.messages = len(sent)
        return done


def _cause(received: Received[ProfileChangedEvent] | Received[ScoresUpdatedEvent]) -> Cause:
    e = received.event
    return Cause(
        e.event_id, e.occurred_at, e.correlation_id, received.accepted_at_ms, received.trace
    )


def _message(decision: Decision, trigger: Trigger) -> OutgoingEvent:
    assert decision.channel is not None  # only sent decisions become messages
    event = CampaignMessageEvent(
        event_id=decision.decision_id,
        occurred_at=decision.decided_at,
        source=SOURCE,
        correlation_id=trigger.correlation_id or trigger.event_id,
        causation_id=trigger.causation_id or trigger.event_id,
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
            offer=decision.offer,
            trigger_kind=trigger.kind.value,
        ),
    )
    return OutgoingEvent(
        CAMPAIGN_MESSAGES,
        decision.profile_id,
        event,
        trigger.accepted_at_ms,
        trace=TraceContext(trigger.trace) if trigger.trace else None,
    )
