"""Uplift and return on investment: treated against control, with a confidence interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959964


@dataclass(frozen=True, slots=True)
class GroupResult:
    """Counts of one group (treated or control) of a campaign cell."""

    size: int = 0
    converted: int = 0
    responded: int = 0
    revenue: float = 0.0
    cost: float = 0.0


@dataclass(frozen=True, slots=True)
class Uplift:
    """The figures a marketing manager asks for, for one campaign cell."""

    treated: GroupResult
    control: GroupResult
    treated_rate: float | None
    control_rate: float | None
    uplift: float | None
    uplift_low: float | None
    uplift_high: float | None
    incremental_conversions: float | None
    incremental_revenue: float | None
    cost: float
    roi: float | None


def _rate(group: GroupResult) -> float | None:
    return group.converted / group.size if group.size else None


def uplift(treated: GroupResult, control: GroupResult) -> Uplift:
    """Compare treated with control conversion; 95% interval by Agresti-Caffo.

    Agresti-Caffo adds one conversion and one non-conversion to each group before the
    normal approximation, which keeps the interval honest for small groups and zero counts.
    """
    t_rate, c_rate = _rate(treated), _rate(control)
    cost = treated.cost
    if t_rate is None or c_rate is None:
        return Uplift(treated, control, t_rate, c_rate, None, None, None, None, None, cost, None)
    diff = t_rate - c_rate
    pt = (treated.converted + 1) / (treated.size + 2)
    pc = (control.converted + 1) / (control.size + 2)
    se = math.sqrt(pt * (1 - pt) / (treated.size + 2) + pc * (1 - pc) / (control.size + 2))
    centre = pt - pc
    revenue_per_treated = treated.revenue / treated.size
    revenue_per_control = control.revenue / control.size
    incremental_revenue = (revenue_per_treated - revenue_per_control) * treated.size
    return Uplift(
        treated=treated,
        control=control,
        treated_rate=t_rate,
        control_rate=c_rate,
        uplift=diff,
        uplift_low=centre - Z_95 * se,
        uplift_high=centre + Z_95 * se,
        incremental_conversions=diff * treated.size,
        incremental_revenue=incremental_revenue,
        cost=cost,
        roi=(incremental_revenue - cost) / cost if cost > 0 else None,
    )
