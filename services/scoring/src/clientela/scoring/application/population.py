"""The scored population in memory, as numpy columns: what sweeps and cut-offs compute over.

One replica holds every customer's model inputs, tier and last predicted value (a million
customers take about 100 MB). It is rebuilt from the database at start and updated after each
committed batch, so the ranking never needs a query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clientela.scoring.application.ports import ScoreRecord, UnpublishedChange
from clientela.scoring.domain.facts import CustomerFacts, FactColumns
from clientela.scoring.domain.potential import ProspectFeatures
from clientela.scoring.domain.rfm import RfmEdges, fit_rfm_edges
from clientela.scoring.domain.tiers import (
    CODE,
    Cutoffs,
    TierCodes,
    TieringPolicy,
    compute_cutoffs,
)
from clientela.shared.contracts import Tier

_FLOAT_COLUMNS = (
    "purchase_days",
    "purchase_count",
    "first_purchase_s",
    "last_purchase_s",
    "total_spend",
    "cost_to_serve",
    "value",
    # The customer's last features while a prospect (NaN: never seen as a prospect).
    "snapshot_touchpoints",
    "snapshot_inbound_share",
)
_INT_COLUMNS = ("revision", "tier_seq", "profile_version")


@dataclass(frozen=True, slots=True)
class CustomerColumns:
    """A consistent copy of the customers' columns, taken under the writer lock."""

    ids: list[str]
    facts: FactColumns
    tiers: TierCodes
    at_risk: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RankingContext:
    """What scoring a customer against the population needs: cut-offs, RFM edges, reference."""

    cutoffs: Cutoffs
    rfm_edges: RfmEdges
    reference: ProspectFeatures | None


class Population:
    """Customers by profile id in growable numpy columns; prospects as a set of ids.

    Everything per customer is a number in a column (the pre-purchase channel mix too, one
    column per channel), so ranking and the prospect reference are vectorised and the
    collector has no per-customer objects to walk.
    """

    def __init__(self, policy: TieringPolicy, rfm_groups: int = 5) -> None:
        self.policy = policy
        self.rfm_groups = rfm_groups
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._size = 0
        self._float = {name: np.zeros(0, np.float64) for name in _FLOAT_COLUMNS}
        self._int = {name: np.zeros(0, np.int64) for name in _INT_COLUMNS}
        self._tier = np.zeros(0, np.int8)
        self._risk = np.zeros(0, np.bool_)
        self._channels: dict[str, int] = {}
        self._mix = np.zeros((0, 0), np.float64)
        self.prospects: set[str] = set()

    def __len__(self) -> int:
        return self._size

    def _grow(self, needed: int) -> None:
        capacity = self._tier.size
        if needed <= capacity:
            return
        new = max(needed, capacity * 2, 1024)
        for store in (self._float, self._int):
            for name, column in store.items():
                grown = np.zeros(new, column.dtype)
                grown[: self._size] = column[: self._size]
                store[name] = grown  # type: ignore[assignment]
        self._tier = np.concatenate([self._tier[: self._size], np.zeros(new - self._size, np.int8)])
        self._risk = np.concatenate(
            [self._risk[: self._size], np.zeros(new - self._size, np.bool_)]
        )
        mix = np.zeros((new, self._mix.shape[1]), np.float64)
        mix[: self._size] = self._mix[: self._size]
        self._mix = mix

    def _channel(self, name: str) -> int:
        column = self._channels.get(name)
        if column is None:
            column = self._channels[name] = len(self._channels)
            self._mix = np.hstack([self._mix, np.zeros((self._mix.shape[0], 1), np.float64)])
        return column

    def apply(self, records: Iterable[ScoreRecord]) -> None:
        """Merge committed records: customers into the columns, prospects into the id set."""
        for record in records:
            pid = record.profile_id
            if record.facts is None:
                self.prospects.add(pid)
                continue
            self.prospects.discard(pid)
            row = self._index.get(pid)
            if row is None:
                self._grow(self._size + 1)
                row = self._size
                self._index[pid] = row
                self._ids.append(pid)
                self._size += 1
            self._set(row, record.facts, record)

    def take_unpublished(self, changes: Iterable[UnpublishedChange]) -> None:
        """Take committed costs to serve of customers (prospects hold none in memory)."""
        cost = self._float["cost_to_serve"]
        for change in changes:
            row = self._index.get(change.profile_id)
            if row is not None:
                cost[row] = change.cost_to_serve
                self._int["profile_version"][row] = change.profile_version

    def remove(self, profile_ids: Iterable[str]) -> None:
        """Forget profiles (erased): the last customer row moves into each freed row."""
        for pid in profile_ids:
            self.prospects.discard(pid)
            row = self._index.pop(pid, None)
            if row is None:
                continue
            last = self._size - 1
            if row != last:
                moved = self._ids[last]
                self._ids[row] = moved
                self._index[moved] = row
                for store in (self._float, self._int):
                    for column in store.values():
                        column[row] = column[last]
                self._tier[row] = self._tier[last]
                self._risk[row] = self._risk[last]
                self._mix[row] = self._mix[last]
            self._ids.pop()
            # Nothing of the erased customer stays behind in the freed row.
            for store in (self._float, self._int):
                for column in store.values():
                    column[last] = 0
            self._tier[last] = 0
            self._risk[last] = False
            self._mix[last] = 0.0
            self._size = last

    def _set(self, row: int, facts: CustomerFacts, record: ScoreRecord) -> None:
        f = self._float
        f["purchase_days"][row] = facts.purchase_days
        f["purchase_count"][row] = facts.purchase_count
        f["first_purchase_s"][row] = facts.first_purchase_s
        f["last_purchase_s"][row] = facts.last_purchase_s
        f["total_spend"][row] = facts.total_spend
        f["cost_to_serve"][row] = facts.cost_to_serve
        f["value"][row] = record.predicted_value
        self._int["revision"][row] = record.revision
        self._int["tier_seq"][row] = record.tier_seq
        self._int["profile_version"][row] = record.profile_version
        self._tier[row] = CODE[record.tier]
        self._risk[row] = record.at_risk
        snapshot = record.prospect_features
        if snapshot is None:
            f["snapshot_touchpoints"][row] = f["snapshot_inbound_share"][row] = np.nan
            return
        f["snapshot_touchpoints"][row] = snapshot.touchpoints
        f["snapshot_inbound_share"][row] = snapshot.inbound_share
        columns = [self._channel(name) for name in snapshot.channel_mix]
        self._mix[row] = 0.0
        self._mix[row, columns] = list(snapshot.channel_mix.values())

    def columns(self) -> CustomerColumns:
        """Return a copy of the customer columns (safe to compute on while writes go on)."""
        n = self._size
        return CustomerColumns(
            ids=list(self._ids),
            facts=self.facts().take(slice(0, n)),
            tiers=self._tier[:n].copy(),
            at_risk=self._risk[:n].copy(),
            values=self._float["value"][:n].copy(),
        )

    def facts(self) -> FactColumns:
        """Return the customers' facts as views (use at once, under the writer lock)."""
        n = self._size
        f = self._float
        return FactColumns(
            purchase_days=f["purchase_days"][:n],
            purchase_count=f["purchase_count"][:n],
            first_purchase_s=f["first_purchase_s"][:n],
            last_purchase_s=f["last_purchase_s"][:n],
            total_spend=f["total_spend"][:n],
            cost_to_serve=f["cost_to_serve"][:n],
        )

    def rows_of(self, profile_ids: Iterable[str]) -> list[int]:
        """Return the column rows of those ids that are customers."""
        return [r for pid in profile_ids if (r := self._index.get(pid)) is not None]

    def values(self) -> npt.NDArray[np.float64]:
        """Return the last predicted value of every customer (a view: do not keep it)."""
        return self._float["value"][: self._size]

    def set_values(self, values: npt.NDArray[np.float64]) -> None:
        """Replace every customer's predicted value (after a sweep over columns())."""
        self._float["value"][: values.size] = values

    def tier_counts(self) -> dict[Tier, tuple[int, float]]:
        """Return count and summed current predicted value per tier (prospects: value 0)."""
        tiers = self._tier[: self._size]
        values = self.values()
        out = {
            tier: (int((tiers == CODE[tier]).sum()), float(values[tiers == CODE[tier]].sum()))
            for tier in (Tier.A, Tier.B, Tier.C)
        }
        out[Tier.P] = (len(self.prospects), 0.0)
        return out

    def reference(self) -> ProspectFeatures | None:
        """Return the mean pre-purchase features of today's tier A customers (vectorised)."""
        n = self._size
        touchpoints = self._float["snapshot_touchpoints"][:n]
        rows = np.flatnonzero((self._tier[:n] == CODE[Tier.A]) & ~np.isnan(touchpoints))
        if rows.size == 0:
            return None
        mix = self._mix[rows].mean(axis=0)
        return ProspectFeatures(
            channel_mix={name: float(mix[c]) for name, c in self._channels.items() if mix[c] > 0},
            touchpoints=float(touchpoints[rows].mean()),
            inbound_share=float(self._float["snapshot_inbound_share"][rows].mean()),
        )


class RankingCache:
    """The ranking context, recomputed from the population when older than refresh_s."""

    def __init__(
        self,
        population: Population,
        refresh_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._population = population
        self._refresh_s = refresh_s
        self._clock = clock
        self._context: RankingContext | None = None
        self._at: float = 0.0

    def get(
        self, as_of_s: float, extra: npt.NDArray[np.float64] | None = None, skip: Iterable[str] = ()
    ) -> RankingContext:
        """Return the context; when stale, rank the population with some values replaced.

        `extra` are new values of the batch being scored and `skip` the ids they replace, so
        a batch ranks against what it is about to write.
        """
        now = self._clock()
        if self._context is not None and now - self._at < self._refresh_s:
            return self._context
        population = self._population
        values = population.values()
        rows = population.rows_of(skip)
        if rows:
            values = np.delete(values, rows)
        if extra is not None and extra.size:
            values = np.concatenate([values, extra])
        self._context = RankingContext(
            cutoffs=compute_cutoffs(values, population.policy),
            rfm_edges=fit_rfm_edges(population.facts(), as_of_s, population.rfm_groups),
            reference=population.reference(),
        )
        self._at = now
        return self._context

    def put(self, context: RankingContext) -> None:
        """Install a context computed exactly by a sweep."""
        self._context = context
        self._at = self._clock()

    def invalidate(self) -> None:
        """Force a recomputation at the next use."""
        self._context = None
