"""Charts as inline SVG markup, drawn on the server: no script, no build step.

Every function returns a complete `<svg>` element whose text is escaped; the caller may
insert it into a page as it is. Colours come from CSS classes (`tier-A`, `ch-email`, ...)
where the page styles them, with presentation attributes as the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

TIER_COLOURS: Mapping[str, str] = {"A": "#1f7a55", "B": "#2f6db5", "C": "#c49a1c", "P": "#8a8f98"}
PALETTE: tuple[str, ...] = (
    "#2f6db5",
    "#1f7a55",
    "#c49a1c",
    "#b4463c",
    "#7b4fa8",
    "#2a9d9d",
    "#8a8f98",
    "#d0743c",
    "#5a6b7d",
    "#9c6b30",
)
CHANNEL_COLOURS: Mapping[str, str] = {
    "email": "#2f6db5",
    "web": "#1f7a55",
    "branch": "#c49a1c",
    "phone": "#b4463c",
    "app": "#7b4fa8",
    "sms": "#2a9d9d",
    "mail": "#8a8f98",
    "chat": "#d0743c",
}
TIER_LEVELS: tuple[str, ...] = ("P", "C", "B", "A")
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def colour_for(key: str, keys: Sequence[str]) -> str:
    """Return a stable colour: fixed for tiers and channels, else the palette by position."""
    if key in TIER_COLOURS:
        return TIER_COLOURS[key]
    if key in CHANNEL_COLOURS:
        return CHANNEL_COLOURS[key]
    index = keys.index(key) if key in keys else sum(map(ord, key))
    return PALETTE[index % len(PALETTE)]


def percent(value: float | None, digits: int = 0) -> str:
    """Format a 0..1 share as a percentage ('n/a' when unknown)."""
    if value is None:
        return "n/a"
    return f"{value * 100:.{digits}f}%"


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, label: str, *, anchor: str = "start", cls: str = "") -> str:
    klass = f' class="{escape(cls)}"' if cls else ""
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" text-anchor="{anchor}"{klass} {_FONT} '
        f'fill="#333">{escape(label)}</text>'
    )


def _svg(width: int, height: int, label: str, body: Sequence[str], cls: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {escape(cls)}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>{"".join(body)}</svg>'
    )


def _legend(keys: Sequence[str], colours: Mapping[str, str], x: float, y: float) -> list[str]:
    parts: list[str] = []
    cursor = x
    for key in keys:
        parts.append(
            f'<rect x="{_n(cursor)}" y="{_n(y - 9)}" width="10" height="10" fill="{colours[key]}"/>'
        )
        parts.append(_text(cursor + 14, y, key))
        cursor += 22 + 7 * len(key)
    return parts


@dataclass(frozen=True, slots=True)
class ParetoCut:
    """Where a tier ends on the curve: the share of customers above the line."""

    tier: str
    customer_share: float


def pareto_chart(
    points: Sequence[tuple[float, float]],
    cuts: Sequence[ParetoCut],
    value_lines: Sequence[float],
    *,
    width: int = 600,
    height: int = 360,
) -> str:
    """Draw the Pareto curve (customers vs value, both 0..1) with the tier bands and lines."""
    left, right, top, bottom = 52, 16, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(share: float) -> float:
        return left + max(0.0, min(1.0, share)) * plot_w

    def py(share: float) -> float:
        return top + (1 - max(0.0, min(1.0, share))) * plot_h

    body: list[str] = []
    start = 0.0
    for index, cut in enumerate([*cuts, ParetoCut("C", 1.0)]):
        end = max(start, min(1.0, cut.customer_share))
        if end > start:
            body.append(
                f'<rect class="band tier-{escape(cut.tier)}" x="{_n(px(start))}" y="{top}" '
                f'width="{_n(px(end) - px(start))}" height="{plot_h}" '
                f'fill="{TIER_COLOURS.get(cut.tier, "#ccc")}" fill-opacity="0.12"/>'
            )
            # Bands can be a few pixels wide (tier A often is): labels step down, never collide.
            label_y = top + 16 + 16 * index
            body.append(
                _text((px(start) + px(end)) / 2, label_y, f"tier {cut.tier}", anchor="middle")
            )
        start = end
    for tick in range(0, 101, 20):
        share = tick / 100
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_n(py(share))}" y2="{_n(py(share))}" '
            'stroke="#e3e3e3"/>'
        )
        body.append(_text(left - 6, py(share) + 4, f"{tick}%", anchor="end"))
        body.append(_text(px(share), top + plot_h + 16, f"{tick}%", anchor="middle"))
    body.append(
        f'<line x1="{left}" y1="{_n(py(0))}" x2="{_n(px(1))}" y2="{_n(py(1))}" '
        'stroke="#999" stroke-dasharray="2 4"/>'
    )
    for share in value_lines:
        body.append(
            f'<line class="value-line" x1="{left}" x2="{left + plot_w}" y1="{_n(py(share))}" '
            f'y2="{_n(py(share))}" stroke="#555" stroke-dasharray="6 4"/>'
        )
        body.append(
            _text(left + plot_w - 4, py(share) - 4, f"{percent(share)} of value", anchor="end")
        )
    body.extend(
        f'<line x1="{_n(px(cut.customer_share))}" x2="{_n(px(cut.customer_share))}" '
        f'y1="{top}" y2="{top + plot_h}" stroke="{TIER_COLOURS.get(cut.tier, "#555")}"/>'
        for cut in cuts
    )
    curve = [(0.0, 0.0), *sorted(points)]
    path = " ".join(f"{_n(px(x))},{_n(py(y))}" for x, y in curve)
    body.append(
        f'<polyline class="curve" points="{path}" fill="none" stroke="#1b2a41" stroke-width="2.5"/>'
    )
    body.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>'
    )
    body.append(
        _text(
            left + plot_w / 2,
            height - 8,
            "share of customers (by predicted value, best first)",
            anchor="middle",
        )
    )
    middle = _n(top + plot_h / 2)
    body.append(
        f'<text x="14" y="{middle}" transform="rotate(-90 14 {middle})" '
        f'text-anchor="middle" {_FONT} fill="#333">share of predicted value</text>'
    )
    summary = "; ".join(
        f"tier {c.tier} ends at {percent(c.customer_share)} of customers" for c in cuts
    )
    return _svg(width, height, f"Pareto curve. {summary}", body, "pareto")


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: a label, its length and the text shown beside it."""

    label: str
    value: float
    shown: str
    colour: str = "#2f6db5"


def bar_chart(bars: Sequence[Bar], *, width: int = 420, title: str = "bar chart") -> str:
    """Draw horizontal bars, longest to scale, each labelled."""
    row, left, right = 26, 110, 140
    height = max(1, len(bars)) * row + 8
    top_value = max((b.value for b in bars), default=0.0) or 1.0
    body: list[str] = []
    for i, bar in enumerate(bars):
        y = 4 + i * row
        length = max(0.0, bar.value) / top_value * (width - left - right)
        body.append(_text(left - 8, y + 15, bar.label, anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{_n(max(length, 1))}" height="{row - 8}" '
            f'rx="2" fill="{bar.colour}"/>'
        )
        body.append(_text(left + length + 6, y + 15, bar.shown))
    return _svg(width, height, title, body, "bars")


def share_bars(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    keys: Sequence[str],
    *,
    width: int = 600,
    title: str = "shares",
) -> str:
    """Draw one 100% stacked bar per row (e.g. channel mix per tier), with a legend."""
    row, left, right = 30, 70, 16
    colours = {k: colour_for(k, keys) for k in keys}
    height = max(1, len(rows)) * row + 34
    plot_w = width - left - right
    body: list[str] = []
    for i, (label, values) in enumerate(rows):
        y = 4 + i * row
        total = sum(max(0.0, values.get(k, 0.0)) for k in keys)
        body.append(_text(left - 8, y + 16, label, anchor="end"))
        x = float(left)
        for key in keys:
            share = max(0.0, values.get(key, 0.0)) / total if total else 0.0
            if share <= 0:
                continue
            w = share * plot_w
            body.append(
                f'<rect x="{_n(x)}" y="{y + 2}" width="{_n(w)}" height="{row - 8}" '
                f'fill="{colours[key]}"><title>{escape(label)} {escape(key)}: '
                f"{percent(share)}</title></rect>"
            )
            if w > 34:
                body.append(
                    f'<text x="{_n(x + w / 2)}" y="{y + 16}" text-anchor="middle" {_FONT} '
                    f'fill="#fff">{percent(share)}</text>'
                )
            x += w
        if not total:
            body.append(_text(left, y + 16, "no data yet"))
    body.extend(_legend(keys, colours, left, height - 8))
    return _svg(width, height, title, body, "share-bars")


@dataclass(frozen=True, slots=True)
class MoveColumn:
    """One period's tier moves: up moves stack above the axis, down moves below."""

    label: str
    up: Mapping[str, int]
    down: Mapping[str, int]


def migration_chart(
    columns: Sequence[MoveColumn], keys: Sequence[str], *, width: int = 640, height: int = 260
) -> str:
    """Draw tier moves per period as diverging stacked columns (up above, down below)."""
    left, right, top, bottom = 70, 12, 12, 54
    plot_w, plot_h = width - left - right, height - top - bottom
    colours = {k: colour_for(k, keys) for k in keys}
    up_max = max((sum(c.up.values()) for c in columns), default=0)
    down_max = max((sum(c.down.values()) for c in columns), default=0)
    span = (up_max + down_max) or 1
    zero = top + plot_h * up_max / span
    scale = plot_h / span
    body: list[str] = [
        f'<line x1="{left}" x2="{left + plot_w}" y1="{_n(zero)}" y2="{_n(zero)}" stroke="#555"/>',
        _text(left - 6, top + 10, f"{up_max} up", anchor="end"),
        _text(left - 6, top + plot_h, f"{down_max} down", anchor="end"),
    ]
    slot = plot_w / max(1, len(columns))
    for i, column in enumerate(columns):
        x = left + i * slot + slot * 0.15
        w = slot * 0.7
        y = zero
        for key in keys:
            n = column.up.get(key, 0)
            if n:
                y -= n * scale
                body.append(
                    f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(n * scale)}" '
                    f'fill="{colours[key]}"><title>{escape(column.label)}: {n} {escape(key)}'
                    "</title></rect>"
                )
        y = zero
        for key in keys:
            n = column.down.get(key, 0)
            if n:
                body.append(
                    f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(n * scale)}" '
                    f'fill="{colours[key]}" fill-opacity="0.55"><title>{escape(column.label)}: '
                    f"{n} {escape(key)}</title></rect>"
                )
                y += n * scale
        if len(columns) <= 12 or i % max(1, len(columns) // 8) == 0:
            body.append(_text(x + w / 2, top + plot_h + 16, column.label, anchor="middle"))
    if not columns:
        body.append(_text(left + plot_w / 2, zero - 6, "no tier moves yet", anchor="middle"))
    body.extend(_legend(keys, colours, left, height - 8))
    return _svg(width, height, "Tier moves over time", body, "migrations")


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its 95% confidence interval."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None


def interval_chart(rows: Sequence[Interval], *, width: int = 560, title: str = "uplift") -> str:
    """Draw estimates with their intervals around a zero line (percentage points)."""
    row, left, right = 28, 120, 70
    height = max(1, len(rows)) * row + 28
    known = [v for r in rows for v in (r.low, r.high, r.estimate) if v is not None]
    bound = max([abs(v) for v in known] + [0.01])
    plot_w = width - left - right

    def px(v: float) -> float:
        return left + (v + bound) / (2 * bound) * plot_w

    body: list[str] = [
        f'<line x1="{_n(px(0))}" x2="{_n(px(0))}" y1="0" y2="{height - 20}" stroke="#555"/>',
        _text(px(0), height - 6, "0", anchor="middle"),
        _text(px(-bound), height - 6, f"{-bound * 100:+.1f} pts", anchor="start"),
        _text(px(bound), height - 6, f"{bound * 100:+.1f} pts", anchor="end"),
    ]
    for i, r in enumerate(rows):
        y = 12 + i * row
        body.append(_text(left - 8, y + 4, r.label, anchor="end"))
        if r.estimate is None:
            body.append(_text(px(0) + 6, y + 4, "no control group yet"))
            continue
        proven = r.low is not None and (r.low > 0 or (r.high is not None and r.high < 0))
        colour = ("#1f7a55" if r.estimate > 0 else "#b4463c") if proven else "#8a8f98"
        if r.low is not None and r.high is not None:
            body.append(
                f'<line x1="{_n(px(r.low))}" x2="{_n(px(r.high))}" y1="{y}" y2="{y}" '
                f'stroke="{colour}" stroke-width="3"/>'
            )
        body.append(f'<circle cx="{_n(px(r.estimate))}" cy="{y}" r="5" fill="{colour}"/>')
        body.append(_text(left + plot_w + 6, y + 4, f"{r.estimate * 100:+.1f} pts"))
    return _svg(width, height, title, body, "intervals")


@dataclass(frozen=True, slots=True)
class Rate:
    """A learned rate against the rate assumed before any evidence."""

    label: str
    learned: float
    prior: float


def rate_chart(rows: Sequence[Rate], *, width: int = 560, title: str = "learned rates") -> str:
    """Draw learned rates as bars with the prior as a tick on each."""
    row, left, right = 24, 250, 60
    height = max(1, len(rows)) * row + 8
    top = max([r.learned for r in rows] + [r.prior for r in rows] + [0.01])
    plot_w = width - left - right
    body: list[str] = []
    for i, r in enumerate(rows):
        y = 4 + i * row
        body.append(_text(left - 8, y + 14, r.label, anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{_n(max(1.0, r.learned / top * plot_w))}" '
            f'height="{row - 8}" fill="#2f6db5"/>'
        )
        prior_x = left + r.prior / top * plot_w
        body.append(
            f'<line x1="{_n(prior_x)}" x2="{_n(prior_x)}" y1="{y}" y2="{y + row - 2}" '
            'stroke="#b4463c" stroke-width="2"><title>before evidence</title></line>'
        )
        after = left + max(r.learned, r.prior) / top * plot_w + 6
        body.append(_text(after, y + 14, percent(r.learned, 1)))
    return _svg(width, height, title, body, "rates")


def tier_steps(
    moves: Sequence[tuple[datetime, str]], now: datetime, *, width: int = 560, height: int = 140
) -> str:
    """Draw a customer's tier over time as a step line (P at the bottom, A at the top)."""
    left, right, top, bottom = 30, 12, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    body: list[str] = []
    for level, tier in enumerate(TIER_LEVELS):
        y = top + plot_h - level * plot_h / (len(TIER_LEVELS) - 1)
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{_n(y)}" y2="{_n(y)}" stroke="#eee"/>'
        )
        body.append(_text(left - 8, y + 4, tier, anchor="end"))
    if not moves:
        body.append(
            _text(left + plot_w / 2, top + plot_h / 2, "no tier moves seen yet", anchor="middle")
        )
        return _svg(width, height, "Tier history", body, "tier-steps")
    ordered = sorted(moves)
    first = ordered[0][0]
    span = max((now - first).total_seconds(), 1.0)

    def px(at: datetime) -> float:
        return left + (at - first).total_seconds() / span * plot_w

    def py(tier: str) -> float:
        level = TIER_LEVELS.index(tier) if tier in TIER_LEVELS else 0
        return top + plot_h - level * plot_h / (len(TIER_LEVELS) - 1)

    points: list[str] = []
    for i, (at, tier) in enumerate(ordered):
        if i:
            points.append(f"{_n(px(at))},{_n(py(ordered[i - 1][1]))}")
        points.append(f"{_n(px(at))},{_n(py(tier))}")
    points.append(f"{_n(px(now))},{_n(py(ordered[-1][1]))}")
    body.append(
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#1b2a41" stroke-width="2"/>'
    )
    body.extend(
        f'<circle cx="{_n(px(at))}" cy="{_n(py(tier))}" r="4" '
        f'fill="{TIER_COLOURS.get(tier, "#555")}"/>'
        for at, tier in ordered
    )
    body.append(_text(left, height - 6, first.strftime("%Y-%m-%d %H:%M")))
    body.append(_text(left + plot_w, height - 6, "now", anchor="end"))
    label = "Tier history: " + ", ".join(f"{t} since {a:%Y-%m-%d %H:%M}" for a, t in ordered)
    return _svg(width, height, label, body, "tier-steps")
