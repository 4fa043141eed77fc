"""In-memory fakes of the campaign's ports, shared by the unit tests."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Self

import pytest

from clientela.campaign.adapters.inbound.wire import inputs_from_events
from clientela.campaign.adapters.outbound.campaign_file import load_catalog
from clientela.campaign.adapters.outbound.contact_ledger import MemoryContactLedger
from clientela.campaign.application.catalog import LiveCatalog
from clientela.campaign.application.decide_campaigns import (
    BatchOutcome,
    CampaignDecider,
)
from clientela.campaign.application.ports import (
    ContactStamp,
    Conversion,
    DecisionRef,
    ProfileAdvance,
    ViewChanges,
)
from clientela.campaign.domain.decision import DecisionPolicy
from clientela.campaign.domain.economics import PosteriorKey, ResponseCounts
from clientela.campaign.domain.model import (
    ERASED_PROFILE,
    Contact,
    Decision,
    Merge,
    Outcome,
    ScoreFacts,
    Trigger,
    TriggerKind,
)
from clientela.campaign.domain.triggers import contact_with_scores
from clientela.shared.codec import OutgoingEvent
from clientela.shared.contracts import (
    CampaignMessageEvent,
    Envelope,
)
from clientela.shared.testing import SettableClock

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW_MS = 1_700_000_000_000


@dataclass
class StoredDecision:
    decision: Decision
    responded_at: datetime | None = None
    converted_at: datetime | None = None
    revenue: Decimal = Decimal(0)


@dataclass
class FakeState:
    """What a database would hold."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    triggers: dict[str, tuple[Trigger, str, datetime | None]] = field(default_factory=dict)
    decisions: dict[str, StoredDecision] = field(default_factory=dict)
    evidence: dict[PosteriorKey, ResponseCounts] = field(default_factory=dict)
    spend: dict[str, Decimal] = field(default_factory=dict)
    inbox: set[str] = field(default_factory=set)
    outbox: list[OutgoingEvent] = field(default_factory=list)
    # profile id -> (profile fingerprint, scores fingerprint)
    fingerprints: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    erased: set[str] = field(default_factory=set)

    def messages(self) -> list[CampaignMessageEvent]:
        """Return the staged campaign messages."""
        return [e.event for e in self.outbox if isinstance(e.event, CampaignMessageEvent)]

    def outcome(self, decision_id: str) -> Outcome:
        """Return the outcome of a stored decision."""
        return self.decisions[decision_id].decision.outcome


class FakeContacts:
    def __init__(self, s: FakeState) -> None:
        self._s = s

    async def get_many(self, profile_ids: Collection[str]) -> dict[str, Contact]:
        return {p: self._s.contacts[p] for p in profile_ids if p in self._s.contacts}

    async def stamps(self, profile_ids: Collection[str]) -> dict[str, ContactStamp]:
        return {
            p: ContactStamp(c.version, c.scored_version, *self._s.fingerprints.get(p, (None, None)))
            for p in profile_ids
            if (c := self._s.contacts.get(p)) is not None
        }

    def _fp(self, pid: str, profile: str | None = None, scores: str | None = None) -> None:
        old = self._s.fingerprints.get(pid, (None, None))
        self._s.fingerprints[pid] = (profile or old[0], scores or old[1])

    async def save_profiles(
        self, contacts: Sequence[Contact], fingerprints: Mapping[str, str], now: datetime
    ) -> None:
        for c in contacts:
            old = self._s.contacts.get(c.profile_id)
            if old is None or old.version < c.version:
                self._fp(c.profile_id, profile=fingerprints.get(c.profile_id))
            if old is None:
                self._s.contacts[c.profile_id] = c
            elif old.version < c.version:
                self._s.contacts[c.profile_id] = replace(
                    c,
                    scored_version=old.scored_version,
                    tier=old.tier,
                    segment=old.segment,
                    predicted_value=old.predicted_value,
                    potential=old.potential,
                    at_risk=old.at_risk,
                    complained_at=old.complained_at,
                )

    async def save(self, changes: ViewChanges, now: datetime) -> None:
        await self.save_profiles(changes.profiles, changes.profile_fingerprints, now)
        await self.save_scores(changes.scores, changes.score_fingerprints, now)
        await self.advance(changes.advanced, changes.scored_versions, now)

    async def save_scores(
        self, scores: Sequence[ScoreFacts], fingerprints: Mapping[str, str], now: datetime
    ) -> None:
        for s in scores:
            old = self._s.contacts.get(s.profile_id)
            if old is None or old.scored_version <= s.profile_version:
                self._s.contacts[s.profile_id] = contact_with_scores(s, old)
                self._fp(s.profile_id, scores=fingerprints.get(s.profile_id))

    async def advance(
        self,
        profiles: Mapping[str, ProfileAdvance],
        scored_versions: Mapping[str, int],
        now: datetime,
    ) -> None:
        for pid in set(profiles) | set(scored_versions):
            old = self._s.contacts.get(pid)
            if old is None:
                continue
            a = profiles.get(pid)
            if a is not None and a.version > old.version:
                seen = max(filter(None, (old.last_seen_at, a.last_seen_at)), default=None)
                old = replace(old, version=a.version, last_seen_at=seen, habits=a.habits)
            old = replace(old, scored_version=max(old.scored_version, scored_versions.get(pid, 0)))
            self._s.contacts[pid] = old

    async def delete(self, profile_ids: Collection[str]) -> None:
        for pid in profile_ids:
            self._s.contacts.pop(pid, None)
            self._s.fingerprints.pop(pid, None)

    async def merge(self, merges: Sequence[Merge], now: datetime) -> None:
        for merged_id, survivor_id in merges:
            old = self._s.contacts.get(merged_id)
            if old is not None and old.complained_at is not None:
                await self.save_complaints({survivor_id: old.complained_at}, now)
            await self.delete([merged_id])

    async def save_complaints(self, complaints: Mapping[str, datetime], now: datetime) -> None:
        for pid, at in complaints.items():
            old = self._s.contacts.get(pid)
            if old is not None and (old.complained_at is None or old.complained_at < at):
                self._s.contacts[pid] = replace(old, complained_at=at)

    async def inactive(self, seen_before: datetime, days: int, limit: int) -> list[Contact]:
        flagged = {
            (t.profile_id, t.episode_at)
            for t, _, _ in self._s.triggers.values()
            if t.kind is TriggerKind.INACTIVITY and t.inactive_days == days
        }
        found = [
            c
            for c in self._s.contacts.values()
            if c.version > 0
            and c.last_seen_at is not None
            and c.last_seen_at < seen_before
            and (c.profile_id, c.last_seen_at) not in flagged
        ]
        return found[:limit]


class FakeTriggers:
    def __init__(self, s: FakeState) -> None:
        self._s = s

    async def add(
        self,
        triggers: Sequence[Trigger],
        now: datetime,
        decided: Collection[str] = (),
        deferred: Mapping[str, datetime] | None = None,
    ) -> None:
        later = deferred or {}
        for t in triggers:
            status = "decided" if t.event_id in decided else "pending"
            self._s.triggers.setdefault(t.event_id, (t, status, later.get(t.event_id)))

    async def pending_for(self, profile_ids: Collection[str]) -> list[Trigger]:
        return [
            t
            for t, status, nb in self._s.triggers.values()
            if status == "pending" and nb is None and t.profile_id in profile_ids
        ]

    async def waiting_and_known(
        self, profile_ids: Collection[str], trigger_ids: Collection[str]
    ) -> tuple[list[Trigger], set[str]]:
        known = {tid for tid in trigger_ids if tid in self._s.triggers}
        return await self.pending_for(profile_ids), known

    async def due(self, now: datetime, limit: int) -> list[Trigger]:
        return [
            t
            for t, status, nb in self._s.triggers.values()
            if status == "pending" and nb is not None and nb <= now
        ][:limit]

    async def mark_decided(self, trigger_event_ids: Collection[str], now: datetime) -> None:
        for tid in trigger_event_ids:
            self._s.triggers[tid] = (self._s.triggers[tid][0], "decided", None)

    async def defer(self, until: Mapping[str, datetime]) -> None:
        for tid, at in until.items():
            self._s.triggers[tid] = (self._s.triggers[tid][0], "pending", at)

    async def expire(self, created_before: datetime, now: datetime) -> int:
        # The fake has no creation time: a trigger's event time stands for it.
        old = [
            tid
            for tid, (t, status, nb) in self._s.triggers.items()
            if status == "pending" and nb is None and t.occurred_at < created_before
        ]
        for tid in old:
            self._s.triggers[tid] = (self._s.triggers[tid][0], "expired", None)
        return len(old)

    async def delete(self, profile_ids: Collection[str]) -> None:
        for tid in [k for k, (t, _, _) in self._s.triggers.items() if t.profile_id in profile_ids]:
            del self._s.triggers[tid]

    async def move(self, holders: Mapping[str, str]) -> None:
        for tid, (t, status, nb) in list(self._s.triggers.items()):
            survivor_id = holders.get(t.profile_id)
            if survivor_id is not None:
                moved = replace(t, profile_id=survivor_id, profile_version=0)
                kept = replace(t, profile_id=survivor_id)
                self._s.triggers[tid] = (moved if status == "pending" else kept, status, nb)


class FakeDecisions:
    def __init__(self, s: FakeState) -> None:
        self._s = s

    async def add(self, decisions: Sequence[Decision]) -> set[str]:
        recorded = set()
        taken = {
            (x.decision.campaign_id, x.decision.trigger_event_id)
            for x in self._s.decisions.values()
        }
        for d in decisions:
            if d.decision_id in self._s.decisions or (d.campaign_id, d.trigger_event_id) in taken:
                continue
            self._s.decisions[d.decision_id] = StoredDecision(d)
            recorded.add(d.decision_id)
        return recorded

    async def decided(self, trigger_event_ids: Collection[str]) -> set[tuple[str, str]]:
        return {
            (x.decision.campaign_id, x.decision.trigger_event_id)
            for x in self._s.decisions.values()
            if x.decision.trigger_event_id in trigger_event_ids
        }

    def _ref(self, x: StoredDecision) -> DecisionRef:
        d = x.decision
        return DecisionRef(
            d.decision_id, d.campaign_id, d.profile_id, d.outcome, d.channel, d.tier, d.segment,
            d.decided_at, x.responded_at is not None, x.converted_at is not None,
        )  # fmt: skip

    async def refs(self, decision_ids: Collection[str]) -> dict[str, DecisionRef]:
        return {i: self._ref(self._s.decisions[i]) for i in decision_ids if i in self._s.decisions}

    async def open_for_conversion(
        self, profile_ids: Collection[str], since: datetime
    ) -> list[DecisionRef]:
        return [
            self._ref(x)
            for x in self._s.decisions.values()
            if x.decision.profile_id in profile_ids
            and x.decision.outcome in (Outcome.SENT, Outcome.CONTROL)
            and x.decision.decided_at >= since
            and x.converted_at is None
        ]

    async def answered_and_open(
        self, decision_ids: Collection[str], profile_ids: Collection[str], since: datetime
    ) -> tuple[dict[str, DecisionRef], list[DecisionRef]]:
        return await self.refs(decision_ids), await self.open_for_conversion(profile_ids, since)

    async def record_responses(self, decision_ids: Collection[str], at: datetime) -> set[str]:
        newly = set()
        for i in decision_ids:
            x = self._s.decisions.get(i)
            if x is not None and x.decision.outcome is Outcome.SENT and x.responded_at is None:
                x.responded_at = at
                newly.add(i)
        return newly

    async def record_conversions(self, conversions: Sequence[Conversion]) -> None:
        for c in conversions:
            x = self._s.decisions[c.decision_id]
            if x.converted_at is None:
                x.converted_at, x.revenue = c.at, c.revenue

    async def anonymise(self, profile_ids: Collection[str]) -> None:
        for x in self._s.decisions.values():
            if x.decision.profile_id in profile_ids:
                x.decision = replace(x.decision, profile_id=ERASED_PROFILE, reasons=())

    async def move(self, holders: Mapping[str, str]) -> None:
        for x in self._s.decisions.values():
            survivor_id = holders.get(x.decision.profile_id)
            if survivor_id is not None:
                x.decision = replace(x.decision, profile_id=survivor_id)


class FakeErasures:
    def __init__(self, s: FakeState) -> None:
        self._s = s

    async def record(self, markers: Collection[str], now: datetime) -> None:
        self._s.erased |= set(markers)

    async def erased(self, markers: Collection[str]) -> set[str]:
        return set(markers) & self._s.erased


class FakeEvidence:
    def __init__(self, s: FakeState) -> None:
        self._s = s

    async def counts(self, campaign_ids: Collection[str]) -> dict[PosteriorKey, ResponseCounts]:
        return {k: v for k, v in self._s.evidence.items() if k[0] in campaign_ids}

    async def add(
        self, sends: Mapping[PosteriorKey, int], responses: Mapping[PosteriorKey, int]
    ) -> None:
        for k in set(sends) | set(responses):
            old = self._s.evidence.get(k, ResponseCounts())
            self._s.evidence[k] = ResponseCounts(
                old.sends + sends.get(k, 0), old.responses + responses.get(k, 0)
            )


class FakeBudgets:
    def __init__(self, s: FakeState) -> None:
        self._s = s

    async def spent(self, campaign_ids: Collection[str]) -> dict[str, Decimal]:
        return {c: self._s.spend.get(c, Decimal(0)) for c in campaign_ids}

    async def add(self, spend: Mapping[str, Decimal]) -> None:
        for c, v in spend.items():
            self._s.spend[c] = self._s.spend.get(c, Decimal(0)) + v


class FakeUnitOfWork:
    """Works on a copy of the state; commit publishes the copy, like a transaction."""

    def __init__(self, state: FakeState) -> None:
        self.committed = state
        self._work = FakeState()

    @property
    def contacts(self) -> FakeContacts:
        return FakeContacts(self._work)

    @property
    def triggers(self) -> FakeTriggers:
        return FakeTriggers(self._work)

    @property
    def decisions(self) -> FakeDecisions:
        return FakeDecisions(self._work)

    @property
    def evidence(self) -> FakeEvidence:
        return FakeEvidence(self._work)

    @property
    def budgets(self) -> FakeBudgets:
        return FakeBudgets(self._work)

    @property
    def erasures(self) -> FakeErasures:
        return FakeErasures(self._work)

    async def unstage(self, keys: Collection[str]) -> None:
        self._work.outbox = [e for e in self._work.outbox if e.key not in keys]

    async def __aenter__(self) -> Self:
        self._work = copy.deepcopy(self.committed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def claim_new(self, event_ids: Sequence[str]) -> set[str]:
        fresh = set(event_ids) - self._work.inbox
        self._work.inbox |= fresh
        return fresh

    async def stage(self, events: Sequence[OutgoingEvent]) -> None:
        self._work.outbox.extend(events)

    async def commit(self) -> None:
        self.committed.__dict__.update(self._work.__dict__)


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(NOW)


@pytest.fixture
def decider(clock: SettableClock) -> CampaignDecider:
    return CampaignDecider(
        LiveCatalog(load_catalog()),
        DecisionPolicy(global_holdout_share=0.05),
        MemoryContactLedger(),
        clock,
    )


class Runner:
    """Hands batches to the use case as the Kafka translator would."""

    def __init__(self, decider: CampaignDecider, state: FakeState) -> None:
        self.decider = decider
        self.state = state

    async def __call__(self, *items: Envelope) -> BatchOutcome:
        inputs = inputs_from_events(items, NOW_MS)
        return await self.decider.handle_batch(inputs, FakeUnitOfWork(self.state))

    async def sweep(self) -> BatchOutcome:
        return await self.decider.sweep(FakeUnitOfWork(self.state))


@pytest.fixture
def run(decider: CampaignDecider, state: FakeState) -> Runner:
    return Runner(decider, state)


@pytest.fixture
def make_runner(clock: SettableClock, state: FakeState) -> Callable[..., Runner]:
    """Return a builder of runners over a custom TOML catalog (no global control group)."""
    from clientela.campaign.adapters.outbound.campaign_file import parse_catalog

    def build(toml: str, holdout: float = 0.0) -> Runner:
        decider = CampaignDecider(
            LiveCatalog(parse_catalog(toml)),
            DecisionPolicy(global_holdout_share=holdout),
            MemoryContactLedger(),
            clock,
        )
        return Runner(decider, state)

    return build
