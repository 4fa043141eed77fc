"""Use case: turn what happens to people into campaign decisions, messages and learning."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from clientela.campaign.application.catalog import LiveCatalog
from clientela.campaign.application.ports import (
    ContactLedger,
    ContactRequest,
    Conversion,
    ProfileAdvance,
    UnitOfWork,
    ViewChanges,
)
from clientela.campaign.domain.decision import (
    CapRequest,
    DecisionPolicy,
    Deferral,
    decide,
    settle,
)
from clientela.campaign.domain.economics import PosteriorKey, ResponseCounts, posterior_key
from clientela.campaign.domain.model import (
    CampaignDefinition,
    Contact,
    Decision,
    Merge,
    Outcome,
    ScoreFacts,
    Trigger,
    TriggerKind,
    erasure_marker,
    merge_targets,
)
from clientela.campaign.domain.responses import (
    MessageReaction,
    Purchase,
    Reaction,
    purchase_between,
)
from clientela.campaign.domain.triggers import (
    Cause,
    coarse_time,
    contact_with_scores,
    inactivity_trigger,
    profile_triggers,
    ready,
    score_triggers,
    scores_fingerprint,
    with_profile_facts,
)
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    CampaignMessage,
    CampaignMessageEvent,
    Channel,
    Tier,
    utc_now,
)
from clientela.shared.contracts.topics import CAMPAIGN_MESSAGES
from clientela.shared.tracing import TraceContext

log = logging.getLogger(__name__)

SOURCE = "campaign"


class ProfileFacts(Protocol):
    """Builds a ProfileChanged's full facts, with this last-seen time (the record's if None)."""

    def __call__(self, last_seen_at: datetime | None = None) -> Contact: ...


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """One ProfileChanged: what is needed to tell whether it changes anything, and its facts.

    `fingerprint` digests the facts decisions read (then, separately, the purchase facts);
    the last-seen time and habits change with nearly every touchpoint and travel apart.
    `facts` builds the full profile facts, needed only when the fingerprint changed.
    """

    cause: Cause
    profile_id: str
    version: int
    fingerprint: str
    last_seen_at: datetime | None
    habits: Mapping[Channel, float]
    facts: ProfileFacts


@dataclass(frozen=True, slots=True)
class ScoresUpdate:
    """The score facts of one ScoresUpdated and the event they came from."""

    cause: Cause
    facts: ScoreFacts


@dataclass(frozen=True, slots=True)
class ReactionReceived:
    """A touchpoint that refers to a campaign message, by its event id."""

    event_id: str
    reaction: MessageReaction


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """A person whose data must go."""

    event_id: str
    profile_id: str


@dataclass(frozen=True, slots=True)
class MergeNotice:
    """Two profiles turned out to be one person: the merged one lives on as the survivor."""

    event_id: str
    survivor_id: str
    merged_id: str


@dataclass(frozen=True, slots=True)
class CampaignInputs:
    """One consumed batch: only what can matter, split by kind, in arrival order."""

    profiles: Sequence[ProfileUpdate] = ()
    scores: Sequence[ScoresUpdate] = ()
    tier_changes: Sequence[Trigger] = ()
    reactions: Sequence[ReactionReceived] = ()
    erasures: Sequence[ErasureRequest] = ()
    merges: Sequence[MergeNotice] = ()


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch (or sweep) did."""

    triggers_decided: int = 0
    decisions: int = 0
    messages: int = 0
    deferred: int = 0
    responses: int = 0
    conversions: int = 0
    expired: int = 0
    written: int = 0


@dataclass(frozen=True, slots=True)
class ResponseSettings:
    """How responses are attributed."""

    attribution_window: timedelta = timedelta(days=14)
    high_potential_threshold: float = 0.7


@dataclass(frozen=True, slots=True)
class ViewSettings:
    """How the contact view is kept: precision of last-seen times, trigger expiry, erasure."""

    last_seen_resolution: timedelta = timedelta(hours=24)
    trigger_ttl: timedelta = timedelta(hours=48)
    erasure_key: bytes = b"clientela-development-erasure-key"


@dataclass(slots=True)
class _Decided:
    triggers: list[str] = field(default_factory=list)
    deferred: dict[str, datetime] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)
    messages: int = 0
    sends: Counter[PosteriorKey] = field(default_factory=Counter)


@dataclass(slots=True)
class _Folded:
    """The contact view after a batch's profile and score facts, and what that revealed."""

    current: dict[str, Contact] = field(default_factory=dict)
    touched: set[str] = field(default_factory=set)
    alive: set[str] = field(default_factory=set)
    triggers: list[Trigger] = field(default_factory=list)
    purchases: list[Purchase] = field(default_factory=list)
    written: int = 0


def _latest_profiles(updates: Sequence[ProfileUpdate]) -> dict[str, ProfileUpdate]:
    latest: dict[str, ProfileUpdate] = {}
    for u in updates:
        known = latest.get(u.profile_id)
        if known is None or known.version < u.version:
            latest[u.profile_id] = u
    return latest


def _latest_scores(updates: Sequence[ScoresUpdate]) -> dict[str, ScoresUpdate]:
    latest: dict[str, ScoresUpdate] = {}
    for u in updates:
        known = latest.get(u.facts.profile_id)
        if known is None or known.facts.profile_version <= u.facts.profile_version:
            latest[u.facts.profile_id] = u
    return latest


class CampaignDecider:
    """Decides campaigns for triggers, learns from responses, measures conversions."""

    def __init__(
        self,
        catalog: LiveCatalog,
        policy: DecisionPolicy,
        ledger: ContactLedger,
        clock: Callable[[], datetime] = utc_now,
        responses: ResponseSettings | None = None,
        view: ViewSettings | None = None,
    ) -> None:
        self._catalog = catalog
        self._policy = policy
        self._ledger = ledger
        self._clock = clock
        self._responses = responses or ResponseSettings()
        self._view = view or ViewSettings()

    def _wanted(self, now: datetime) -> set[tuple[TriggerKind, Tier | None]]:
        """Return the (trigger kind, tier) pairs some active campaign may act on.

        Triggers other than tier moves are matched on their kind alone (their tier may not be
        known yet when they are found).
        """
        wanted: set[tuple[TriggerKind, Tier | None]] = set()
        for c in self._catalog.active(now):
            for kind in c.trigger:
                if kind.is_tier_move:
                    wanted.update((kind, tier) for tier in c.to_tiers)
                else:
                    wanted.add((kind, None))
        return wanted

    def _marker(self, profile_id: str) -> str:
        return erasure_marker(self._view.erasure_key, profile_id)

    async def handle_batch(self, inputs: CampaignInputs, uow: UnitOfWork) -> BatchOutcome:
        """Apply one batch in one transaction; a redelivered batch changes nothing.

        Profile and score facts are guarded by their versions (an older or equal version
        changes nothing), so they need no inbox entry. Nor do tier moves: each becomes one
        trigger under the event's id, stored whatever comes of it, so a stored trigger (read
        with the waiting ones) tells a redelivery apart; a tier move no active campaign could
        take is not stored and comes to nothing again. Reactions, erasures and merges are
        claimed in the inbox.
        """
        now = self._clock()
        claims = [
            *(r.event_id for r in inputs.reactions),
            *(e.event_id for e in inputs.erasures),
            *(m.event_id for m in inputs.merges),
        ]
        async with uow:
            fresh = await uow.claim_new(claims) if claims else set()
            erased = {e.profile_id for e in inputs.erasures if e.event_id in fresh}
            if erased:
                await self._erase(uow, erased, now)
            merges = [
                (m.merged_id, m.survivor_id)
                for m in inputs.merges
                if m.event_id in fresh and m.merged_id != m.survivor_id
            ]
            if merges:
                await self._merge(uow, merges, now)
            survivors = {survivor for _, survivor in merges}
            tier_triggers = list(inputs.tier_changes)
            folded = await self._fold(
                uow, inputs, {t.profile_id for t in tier_triggers}, erased, now
            )
            triggers = folded.triggers + [t for t in tier_triggers if t.profile_id in folded.alive]
            # A trigger no active campaign could take is not kept: nothing would come of it.
            wanted = self._wanted(now)
            triggers = list(
                {t.event_id: t for t in triggers if (t.kind, t.to_tier) in wanted
                 or (t.kind, None) in wanted}.values()
            )  # fmt: skip

            responses, conversions, responded = await self._track(
                uow,
                [r.reaction for r in inputs.reactions if r.event_id in fresh],
                folded.purchases,
                now,
            )

            watch = folded.touched | survivors
            moves = {t.event_id for t in tier_triggers} & {t.event_id for t in triggers}
            # Triggers that waited for a person's data are looked at again when it arrives;
            # a tier move whose trigger is stored already was consumed before.
            waiting, seen = (
                await uow.triggers.waiting_and_known(watch, moves)
                if watch or moves
                else ([], set())
            )
            triggers = [t for t in triggers if t.event_id not in seen]
            new_ids = {t.event_id for t in triggers}
            stored = [t for t in waiting if t.event_id not in new_ids]
            done = await self._decide(uow, stored, triggers, now, folded.current, responded)
            # The batch's sends and responses in one write.
            await uow.evidence.add(done.sends, responded)
            if erased:
                # Not before: a message staged in this very batch must not leave either.
                await uow.unstage(erased)
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
            written=folded.written,
        )

    async def _fold(
        self,
        uow: UnitOfWork,
        inputs: CampaignInputs,
        trigger_people: set[str],
        erased: set[str],
        now: datetime,
    ) -> _Folded:
        """Fold the batch's newest facts per person into the view; write only what changed."""
        out = _Folded()
        profiles = _latest_profiles(inputs.profiles)
        scores = _latest_scores(inputs.scores)
        people = set(profiles) | set(scores) | trigger_people
        stamps = await uow.contacts.stamps(people) if people else {}
        # A person unknown here may have been erased: late events must not bring them back.
        unknown = {self._marker(p): p for p in people - stamps.keys()}
        gone = set(erased)
        if unknown:
            gone |= {unknown[m] for m in await uow.erasures.erased(unknown)}
        out.alive = people - gone

        resolution = self._view.last_seen_resolution
        threshold = self._responses.high_potential_threshold
        # Profile facts are a function of the ProfileChanged alone: they are written without
        # reading the stored contact, which is read only when a purchase needs comparing.
        profile_rows: dict[str, tuple[ProfileUpdate, Contact]] = {}
        advanced: dict[str, ProfileAdvance] = {}
        for pid, u in profiles.items():
            if pid in gone:
                continue
            stamp = stamps.get(pid)
            if stamp is not None and stamp.version >= u.version:
                continue  # an older profile version never overwrites a newer one
            out.touched.add(pid)
            seen = coarse_time(u.last_seen_at, resolution)
            if stamp is not None and stamp.profile_fingerprint == u.fingerprint:
                advanced[pid] = ProfileAdvance(u.version, seen, u.habits)
            else:
                # The facts carry these habits already; only the last-seen time is coarsened
                # (None only when the record has none either).
                facts = u.facts(seen)
                profile_rows[pid] = (u, facts)
        score_rows: dict[str, tuple[ScoresUpdate, str]] = {}
        advanced_scores: dict[str, int] = {}
        for pid, s in scores.items():
            if pid in gone:
                continue
            stamp = stamps.get(pid)
            version = s.facts.profile_version
            if stamp is not None and stamp.scored_version > version:
                continue
            fingerprint = scores_fingerprint(s.facts)
            if stamp is not None and stamp.scores_fingerprint == fingerprint:
                if stamp.scored_version < version:
                    advanced_scores[pid] = version
                    out.touched.add(pid)
                continue
            score_rows[pid] = (s, fingerprint)
            out.touched.add(pid)

        # The stored contact is read only where the comparison can start something: a
        # purchase (first purchase, cross-sell, conversions), or scores at risk or promising.
        wanted = {
            pid
            for pid, (u, _) in profile_rows.items()
            if pid in stamps and (stamps[pid].profile_fingerprint or "")[8:] != u.fingerprint[8:]
        }
        wanted |= {
            pid
            for pid, (s, _) in score_rows.items()
            if pid in stamps and (s.facts.at_risk or (s.facts.potential or 0.0) >= threshold)
        }
        current = await uow.contacts.get_many(wanted) if wanted else {}
        for pid, (u, facts) in profile_rows.items():
            stamp = stamps.get(pid)
            if pid in current or stamp is None:
                before = current.get(pid)
                after = with_profile_facts(facts, before)
                out.triggers += profile_triggers(u.cause, before, after)
                purchase = purchase_between(before, after)
                if purchase is not None:
                    out.purchases.append(purchase)
                current[pid] = after
        for pid, (s, _) in score_rows.items():
            before = current.get(pid)
            if pid in advanced and before is not None:
                a = advanced[pid]
                before = replace(
                    before, version=a.version, last_seen_at=a.last_seen_at, habits=a.habits
                )
            # A stored contact that was not read is only written: no triggers to compare.
            if before is not None or pid not in stamps:
                after = contact_with_scores(s.facts, before)
                out.triggers += score_triggers(s.cause, before, after, threshold)
                current[pid] = after
        for pid, a in advanced.items():
            if pid in current and current[pid].version < a.version:
                current[pid] = replace(
                    current[pid], version=a.version, last_seen_at=a.last_seen_at, habits=a.habits
                )
        for pid, version in advanced_scores.items():
            if pid in current and current[pid].scored_version < version:
                current[pid] = replace(current[pid], scored_version=version)
        changes = ViewChanges(
            profiles=[facts for _, facts in profile_rows.values()],
            profile_fingerprints={pid: u.fingerprint for pid, (u, _) in profile_rows.items()},
            scores=[s.facts for s, _ in score_rows.values()],
            score_fingerprints={pid: fp for pid, (_, fp) in score_rows.items()},
            advanced=advanced,
            scored_versions=advanced_scores,
        )
        if changes.profiles or changes.scores or advanced or advanced_scores:
            await uow.contacts.save(changes, now)
        out.current = current
        out.written = len(profile_rows) + len(score_rows)
        return out

    async def _erase(self, uow: UnitOfWork, profile_ids: set[str], now: datetime) -> None:
        """Forget people: their view, triggers and counters; anonymise their decisions."""
        # The ledger first: a failed commit redelivers the erasure, and forgetting is
        # idempotent, while a committed erasure is never looked at again.
        await self._ledger.forget(sorted(profile_ids), now)
        await uow.erasures.record({self._marker(p) for p in profile_ids}, now)
        await uow.contacts.delete(profile_ids)
        await uow.triggers.delete(profile_ids)
        await uow.decisions.anonymise(profile_ids)
        log.info("erased %d profile(s)", len(profile_ids))

    async def _merge(self, uow: UnitOfWork, merges: Sequence[Merge], now: datetime) -> None:
        """Move absorbed people's history, caps and waiting triggers to their survivors.

        All merges of a batch at once, with the result of applying them one by one in order.
        """
        await self._ledger.move(merges, now)
        await uow.contacts.merge(merges, now)
        holders = merge_targets(merges)
        await uow.triggers.move(holders)
        await uow.decisions.move(holders)

    async def sweep(self, uow: UnitOfWork, limit: int = 500) -> BatchOutcome:
        """Decide deferred triggers whose time has come and find people gone quiet."""
        now = self._clock()
        async with uow:
            expired = await uow.triggers.expire(now - self._view.trigger_ttl, now)
            triggers = await uow.triggers.due(now, limit)
            fresh: list[Trigger] = []
            # Last-seen times are kept rounded down: waiting one resolution more never calls
            # a person inactive early.
            slack = self._view.last_seen_resolution
            for days in sorted(self._catalog.inactivity_days(now)):
                seen_before = now - timedelta(days=days) - slack
                for contact in await uow.contacts.inactive(seen_before, days, limit):
                    trigger = inactivity_trigger(contact, days, now)
                    if trigger is not None:
                        fresh.append(trigger)
            done = await self._decide(uow, triggers, fresh, now, {})
            await uow.evidence.add(done.sends, {})
            await uow.commit()
        if expired:
            log.warning("dropped %d trigger(s) whose profile data never arrived", expired)
        return BatchOutcome(
            len(done.triggers),
            len(done.recorded),
            done.messages,
            len(done.deferred),
            expired=expired,
        )

    async def _track(
        self,
        uow: UnitOfWork,
        reactions: Sequence[MessageReaction],
        bought: Sequence[Purchase],
        now: datetime,
    ) -> tuple[int, int, Counter[PosteriorKey]]:
        """Record responses and conversions; return their counts and the responses per cell."""
        window = self._responses.attribution_window
        since = min(p.at for p in bought) - window if bought else now
        buyers = {p.profile_id for p in bought}
        messages = {x.message_id for x in reactions}
        refs, open_refs = (
            await uow.decisions.answered_and_open(messages, buyers, since)
            if messages or buyers
            else ({}, [])
        )
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
            return len(newly), len(conversions), cells
        return 0, len(conversions), Counter()

    async def _decide(
        self,
        uow: UnitOfWork,
        stored: Sequence[Trigger],
        new: Sequence[Trigger],
        now: datetime,
        current: Mapping[str, Contact],
        responded: Mapping[PosteriorKey, int] | None = None,
    ) -> _Decided:
        """Decide the stored and the new triggers whose person is known well enough.

        New triggers are stored at the end with the state they reached (one insert, no
        update); a new trigger cannot have decisions yet: its cause is new (a version guard
        let it through) or its tier move has no stored trigger.
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
        # Only campaigns reacting to a trigger's kind can match it: look at those alone.
        by_kind: dict[TriggerKind, list[CampaignDefinition]] = {}
        for c in campaigns:
            for kind in c.trigger:
                by_kind.setdefault(kind, []).append(c)
        new_ids = {t.event_id for t in new}
        old_ids = [t.event_id for t in runnable if t.event_id not in new_ids]
        taken = await uow.decisions.decided(old_ids) if old_ids else set()
        ids = [c.id for c in campaigns]
        evidence = await uow.evidence.counts(ids) if ids else {}
        # Responses of this batch are written with its sends, after the decisions: count them.
        for key, n in (responded or {}).items():
            known_cell = evidence.get(key, ResponseCounts())
            evidence[key] = ResponseCounts(known_cell.sends, known_cell.responses + n)
        budgeted = [c for c in campaigns if c.budget is not None]
        spent = await uow.budgets.spent([c.id for c in budgeted]) if budgeted else {}
        remaining = {
            c.id: float((c.budget or Decimal(0)) - spent.get(c.id, Decimal(0))) for c in budgeted
        }

        finals: list[tuple[Decision, Trigger]] = []
        requests: list[tuple[CapRequest, Trigger]] = []
        for trigger in runnable:
            contact = known[trigger.profile_id]
            open_campaigns = [
                c for c in by_kind.get(trigger.kind, ()) if (c.id, trigger.event_id) not in taken
            ]
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
        spend: dict[str, Decimal] = {}
        for d, _ in sent:
            assert d.channel is not None
            done.sends[posterior_key(d.campaign_id, d.channel, d.tier, d.segment)] += 1
            spend[d.campaign_id] = spend.get(d.campaign_id, Decimal(0)) + Decimal(str(d.cost))
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
            reasons=[r.as_contract() for r in decision.reasons],
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
