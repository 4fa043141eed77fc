"""Charts for each page, drawn from what the use cases returned."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup

from clientela.console.application.documents import (
    CampaignRoiDoc,
    LearningCellDoc,
    ProfileDoc,
    TierSummaryDoc,
    UpliftDoc,
)
from clientela.console.application.ports import TierMoveRow
from clientela.console.domain import charts
from clientela.console.domain.base import Migrations, channel_keys, ordered_tiers, pareto_cuts


def _safe(svg: str) -> Markup:
    # The chart functions escape every text they place in the SVG.
    return Markup(svg)  # noqa: S704


def pareto(summary: TierSummaryDoc) -> Markup:
    """The Pareto curve with the A/B/C bands and the value shares that define them."""
    counts = {t.tier: t.count for t in summary.tiers}
    cuts = pareto_cuts(counts)
    bands = (
        [charts.ParetoCut("A", cuts[0]), charts.ParetoCut("B", cuts[1])] if cuts is not None else []
    )
    points = [(p.customer_share, p.value_share) for p in summary.pareto]
    lines = [summary.cutoffs.a_share, summary.cutoffs.b_share]
    return _safe(charts.pareto_chart(points, bands, lines))


def tier_bars(summary: TierSummaryDoc, *, by_value: bool) -> Markup:
    """Count or predicted value per tier."""
    bars = [
        charts.Bar(
            label=f"tier {t.tier}",
            value=t.value if by_value else float(t.count),
            shown=(
                f"{t.value:,.0f} ({charts.percent(t.value_share)})" if by_value else f"{t.count:,}"
            ),
            colour=charts.TIER_COLOURS.get(t.tier, "#555"),
        )
        for t in summary.tiers
    ]
    title = "Predicted value per tier" if by_value else "Profiles per tier"
    return _safe(charts.bar_chart(bars, title=title))


def migrations(moves: Migrations) -> Markup:
    """Tier moves per period."""
    return _safe(charts.migration_chart(moves.columns, moves.keys))


def channel_mix(mix: dict[str, dict[str, float]], title: str) -> Markup:
    """One 100% bar per tier, split by channel."""
    keys = channel_keys(mix)
    rows = [(f"tier {tier}", mix[tier]) for tier in ordered_tiers(mix)]
    return _safe(charts.share_bars(rows, keys, title=title))


def profile_channels(profile: ProfileDoc) -> Markup:
    """The person's touchpoints per channel."""
    counts = profile.aggregates.counts_by_channel
    keys = sorted(counts, key=lambda ch: (-counts[ch], ch))
    bars = [
        charts.Bar(ch, float(counts[ch]), str(counts[ch]), charts.colour_for(ch, keys))
        for ch in keys
    ]
    return _safe(charts.bar_chart(bars, width=360, title="Touchpoints per channel"))


def tier_history(history: list[TierMoveRow], now: datetime) -> Markup:
    """The person's tier over time."""
    return _safe(charts.tier_steps([(h.at, h.to_tier) for h in history], now))


def _interval(label: str, u: UpliftDoc) -> charts.Interval:
    return charts.Interval(label, u.uplift, u.uplift_ci95_low, u.uplift_ci95_high)


def uplift(roi: CampaignRoiDoc) -> Markup:
    """Uplift with its 95% interval: overall, per channel and per tier."""
    rows = [_interval("all", roi.total)]
    rows += [_interval(f"channel {u.channel}", u) for u in roi.by_channel]
    rows += [_interval(f"tier {u.tier}", u) for u in roi.by_tier]
    return _safe(charts.interval_chart(rows, title="Uplift (treated minus control conversion)"))


def learning(cells: list[LearningCellDoc]) -> Markup:
    """Learned response rates against the rates assumed before evidence."""
    rows = [
        charts.Rate(
            f"{c.channel} · tier {c.tier} · {c.segment.replace('_', ' ')}",
            c.posterior_mean,
            c.prior_rate,
        )
        for c in sorted(cells, key=lambda c: (c.tier, c.segment, -c.posterior_mean))
    ]
    return _safe(charts.rate_chart(rows, title="Learned response rate per channel"))
