"""Use case: score a batch of profile changes, store the scores and announce tier moves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from clientela.scoring.application.model_registry import ModelRegistry
from clientela.scoring.application.population import Population, RankingCache
from clientela.scoring.application.ports import (
    ProfileChangeMessage,
    ScoreRecord,
    ScoringUnitOfWork,
    UnpublishedChange,
)
from clientela.scoring.application.publishing import Cause, Publication, publish
from clientela.scoring.application.scorer import (
    ScoredProfile,
    ScoredProspect,
    ScoringPolicy,
    all_reasons,
    customer_payloads,
    inputs_digest,
    previous_codes,
    prospect_payload,
    score_customers,
    segment_of,
    within_contract,
)
from clientela.scoring.domain.facts import CustomerFacts, FactColumns, facts_of
from clientela.scoring.domain.potential import (
    ProspectFeatures,
    potential_moved,
    prospect_features,
)
from clientela.scoring.domain.profile_view import ProfileView
from clientela.scoring.domain.reasons import ReasonData
from clientela.scoring.domain.value_model import scored_lifecycle
from clientela.shared.contracts import Lifecycle, Segment, Tier, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one batch did: profiles scored, tier moves announced, messages ignored."""

    scored: int = 0
    tier_changes: int = 0
    ignored: int = 0

    @property
    def staged(self) -> bool:
        """Return whether events wait in the outbox."""
        return self.scored > 0


def newest_per_profile(messages: Sequence[ProfileChangeMessage]) -> list[ProfileChangeMessage]:
    """Keep only the highest profile version of each profile in a batch."""
    newest: dict[str, ProfileChangeMessage] = {}
    for message in messages:
        data = message.event.data
        kept = newest.get(data.profile_id)
        if kept is None or data.version > kept.event.data.version:
            newest[data.profile_id] = message
    return list(newest.values())


class ScoreProfiles:
    """Scores profile changes in one transaction per batch; repeats and stale versions no-op.

    Customers are scored together, vectorised, with the fitted parameters in force; their
    tier comes from the population's cut-offs (refreshed by age) with hysteresis against the
    stored tier. The writer lock keeps batches and sweeps of this process from interleaving.
    """

    def __init__(
        self,
        models: ModelRegistry,
        population: Population,
        ranking: RankingCache,
        policy: ScoringPolicy,
        lock: asyncio.Lock,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._models = models
        self._population = population
        self._ranking = ranking
        self._policy = policy
        self._lock = lock
        self._clock = clock

    async def __call__(
        self, messages: Sequence[ProfileChangeMessage], uow: ScoringUnitOfWork
    ) -> BatchOutcome:
        """Apply a batch; return what was done."""
        async with self._lock, uow:
            # No inbox: the stored profile version is the guard. Versions only grow, so an
            # equal or lower one is a repeat or out of order. A version that moved anything
            # scoring keeps is stored (scored, or kept unpublished), so its repeat stops
            # here; one that moved nothing is not stored, and its repeat finds the same
            # fingerprint and cost and is skipped again.
            loaded = await uow.load_batch(sorted({m.event.data.profile_id for m in messages}))
            stored = loaded.stored
            todo = [
                m
                for m in newest_per_profile(messages)
                if m.event.data.profile_id not in loaded.erased
                and _is_newer(m, stored.get(m.event.data.profile_id))
            ]
            if not todo:
                await uow.commit()
                return BatchOutcome(ignored=len(messages))
            publications, quiet = self._score(todo, stored, self._clock())
            if not publications:
                if quiet:
                    await uow.store_unpublished(quiet)
                await uow.commit()
                self._population.take_unpublished(quiet)
                return BatchOutcome(ignored=len(messages))
            transitions = [p.transition for p in publications if p.transition is not None]
            # Kept changes go in the same write: one statement less per batch on PostgreSQL.
            await uow.write_scored(
                [p.record for p in publications],
                transitions,
                [e for p in publications for e in p.events],
                quiet,
            )
            await uow.commit()
            self._population.take_unpublished(quiet)
            self._population.apply(p.record for p in publications)
        log.info(
            "scored %d profile(s), %d tier change(s), %d message(s) ignored",
            len(publications),
            len(transitions),
            len(messages) - len(publications),
        )
        return BatchOutcome(
            scored=len(publications),
            tier_changes=len(transitions),
            ignored=len(messages) - len(publications),
        )

    def _score(
        self,
        todo: list[ProfileChangeMessage],
        stored: dict[str, ScoreRecord],
        now: datetime,
    ) -> tuple[list[Publication], list[UnpublishedChange]]:
        model = self._models.model
        customers: list[ProfileView] = []
        customer_facts: list[CustomerFacts] = []
        segments: list[tuple[Segment, ReasonData] | None] = []
        digests: list[int] = []
        prospects: list[tuple[ProfileView, ProspectFeatures, int]] = []
        causes: dict[str, Cause] = {}
        quiet: list[UnpublishedChange] = []
        for message in todo:
            profile = message.event.data
            before = stored.get(profile.profile_id)
            found = facts_of(profile)
            if found is None:
                features = prospect_features(profile)
                digest = inputs_digest(Lifecycle.PROSPECT, None, None, features)
                if before is None or before.inputs_digest != digest:
                    prospects.append((profile, features, digest))
                    causes[profile.profile_id] = _cause(message)
                else:
                    _unpublished(quiet, profile, before, features)
                continue
            segment = segment_of(profile, self._policy)
            digest = inputs_digest(scored_lifecycle(profile), found, segment, None)
            # Nothing the value, tier or segment read changed (a page view, a consent, a
            # trait): the stored scores stand; cost to serve and time passing are the
            # sweeps' business.
            if before is not None and before.inputs_digest == digest:
                _unpublished(quiet, profile, before, None)
                continue
            customers.append(profile)
            customer_facts.append(found)
            segments.append(segment)
            digests.append(digest)
            causes[profile.profile_id] = _cause(message)
        if not customers and not prospects:
            return [], quiet
        ids = [p.profile_id for p in customers]
        columns = FactColumns.of(customer_facts)
        # Values first (they need no ranking), so a stale ranking is rebuilt with this batch.
        values = within_contract(model.estimate(columns, now)).predicted_value
        context = self._ranking.get(now.timestamp(), extra=values, skip=ids)
        previous = [stored.get(pid) for pid in ids]
        scored = score_customers(
            model,
            columns,
            now,
            previous_codes([p.tier if p is not None else None for p in previous]),
            context,
            self._policy,
        )
        payloads = customer_payloads(
            scored,
            None,
            [
                ScoredProfile(p.profile_id, p.version, scored_lifecycle(p), segment)
                for p, segment in zip(customers, segments, strict=True)
            ],
            model_version=model.model_version,
            facts=columns,
            as_of=now,
            context=context,
            policy=self._policy,
        )
        out = [
            publish(
                data,
                before,
                causes[data["profile_id"]],
                now,
                facts=facts,
                prospect_features=before.prospect_features if before is not None else None,
                tier_reasons=partial(all_reasons, data),
                inputs_digest=digest,
            )
            for data, before, facts, digest in zip(
                payloads, previous, customer_facts, digests, strict=True
            )
        ]
        for profile, features, digest in prospects:
            cost = float(profile.aggregates.cost_to_serve)
            data = prospect_payload(
                ScoredProspect(profile.profile_id, profile.version, cost),
                features,
                context.reference,
                model.model_version,
                now,
            )
            before = stored.get(profile.profile_id)
            # Still a prospect, and its potential within the tolerance of the published one:
            # nothing a consumer reads moved. The features and fingerprint are kept, marked
            # for the sweep, which publishes the exact potential.
            if (
                before is not None
                and before.tier is Tier.P
                and not potential_moved(before.potential, data["potential"])
            ):
                quiet.append(
                    UnpublishedChange(profile.profile_id, profile.version, cost, features, digest)
                )
                continue
            out.append(
                publish(
                    data,
                    before,
                    causes[profile.profile_id],
                    now,
                    facts=None,
                    prospect_features=features,
                    tier_reasons=partial(all_reasons, data),
                    inputs_digest=digest,
                )
            )
        return out, quiet


def _unpublished(
    quiet: list[UnpublishedChange],
    profile: ProfileView,
    before: ScoreRecord,
    features: ProspectFeatures | None,
) -> None:
    # The version is newer than the stored one (checked before); when nothing the sweep
    # publishes moved either (a consent, a trait), no row is written at all.
    cost = float(profile.aggregates.cost_to_serve)
    if cost != before.cost_to_serve or (
        features is not None and features != before.prospect_features
    ):
        quiet.append(UnpublishedChange(profile.profile_id, profile.version, cost, features))


def _cause(message: ProfileChangeMessage) -> Cause:
    event = message.event
    return Cause(event.event_id, event.correlation_id or event.event_id, message.accepted_at_ms)


def _is_newer(message: ProfileChangeMessage, stored: ScoreRecord | None) -> bool:
    # Profile versions only grow: an equal or lower one was applied already or is out of order.
    return stored is None or message.event.data.version > stored.profile_version
