"""Pure parts of the console: charts, periods, moves, plain words, merge fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clientela.console.domain import charts
from clientela.console.domain.base import (
    MoveCount,
    bucket_width,
    migrations,
    ordered_tiers,
    pareto_cuts,
    period_label,
    period_words,
)
from clientela.console.domain.describe import how, outcome, who
from clientela.console.domain.merges import fingerprint, linking
from clientela.shared.contracts import Touchpoint

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def test_chart_text_is_escaped() -> None:
    svg = charts.bar_chart([charts.Bar("<script>alert(1)</script>", 3, "3")], title='"x" & y')
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "&quot;x&quot; &amp; y" in svg


def test_pareto_chart_draws_bands_lines_and_the_curve() -> None:
    svg = charts.pareto_chart(
        [(0.2, 0.8), (0.5, 0.95), (1.0, 1.0)],
        [charts.ParetoCut("A", 0.2), charts.ParetoCut("B", 0.5)],
        [0.8, 0.95],
    )
    assert svg.count('class="band') == 3  # A, B and C
    assert svg.count('class="value-line"') == 2
    assert 'class="curve"' in svg
    assert "tier A ends at 20% of customers" in svg


def test_interval_chart_marks_proven_uplift() -> None:
    svg = charts.interval_chart(
        [
            charts.Interval("proven", 0.1, 0.02, 0.18),
            charts.Interval("unsure", 0.1, -0.05, 0.25),
            charts.Interval("none", None, None, None),
        ]
    )
    assert svg.count("#1f7a55") == 2  # the proven row's line and point are green
    assert "no control group yet" in svg


def test_tier_steps_and_empty_charts_say_so() -> None:
    assert "no tier moves seen yet" in charts.tier_steps([], T0)
    assert "no tier moves yet" in charts.migration_chart([], [])
    svg = charts.tier_steps([(T0, "C"), (T0 + timedelta(days=3), "B")], T0 + timedelta(days=5))
    assert "C since 2025-03-01" in svg


def test_bucket_width_fits_the_span_in_at_most_24_periods() -> None:
    assert bucket_width(T0, T0 + timedelta(seconds=50)) == 5
    assert bucket_width(T0, T0 + timedelta(hours=3)) == 900
    assert bucket_width(T0, T0 + timedelta(days=400)) == 30 * 86_400
    assert period_label(T0, 10) == "12:00:00"
    assert period_label(T0, 86_400) == "2025-03-01"
    assert period_words(3600) == "1 hour"
    assert period_words(10) == "10 seconds"


def test_migrations_split_up_and_down_moves_and_count_first_tiers() -> None:
    later = T0 + timedelta(minutes=1)
    moves = migrations(
        [
            MoveCount(T0, None, "C", 5),
            MoveCount(T0, "C", "B", 2),
            MoveCount(later, "B", "A", 1),
            MoveCount(later, "A", "B", 3),
            MoveCount(later, "C", "B", 1),
        ],
        60,
    )
    assert moves.entered == {"C": 5}
    assert moves.totals == {"C→B": 3, "B→A": 1, "A→B": 3}
    assert moves.keys == ["B→A", "C→B", "A→B"]  # up moves first, the best target first
    assert [c.label for c in moves.columns] == ["12:00", "12:01"]
    assert moves.columns[1].up == {"B→A": 1, "C→B": 1}
    assert moves.columns[1].down == {"A→B": 3}
    quiet = migrations([MoveCount(T0, "C", "B", 1)], 60, (T0, T0 + timedelta(minutes=3)))
    assert [c.label for c in quiet.columns] == ["12:00", "12:01", "12:02", "12:03"]


def test_pareto_cuts_leave_prospects_out() -> None:
    assert pareto_cuts({"A": 10, "B": 30, "C": 60, "P": 500}) == (0.1, 0.4)
    assert pareto_cuts({"P": 3}) is None
    assert ordered_tiers(["C", "P", "A", "B"]) == ["A", "B", "C", "P"]


def test_touchpoints_in_plain_words() -> None:
    call = Touchpoint.model_validate(
        {
            "kind": "phone_call",
            "channel": "phone",
            "direction": "inbound",
            "identifiers": {"phone": "+12025550143"},
            "agent": {"agent_id": "agent-7", "role": "call_agent", "team": "desk"},
            "call": {"duration_seconds": 65, "outcome": "no_answer"},
        }
    )
    assert how(call) == "call of 1m05s, no answer"
    assert who(call) == "agent-7 (call agent, desk)"
    assert "+1202" not in how(call)  # never an identifier
    web = Touchpoint.model_validate(
        {
            "kind": "web_visit",
            "channel": "web",
            "direction": "inbound",
            "identifiers": {"anonymous_id": "a"},
            "web_visit": {"page_views": 1},
        }
    )
    assert how(web) == "1 page view"
    assert who(web) == "self-service"
    assert outcome("control", False, False) == "held back (control group)"
    assert outcome("sent", True, True) == "sent; bought afterwards"


def test_merge_fingerprints_find_the_linking_identifiers() -> None:
    owned = [("email", "a@b.c"), ("phone", "+1202")]
    assert linking(owned, [fingerprint("phone", "+1202")]) == {("phone", "+1202")}
    assert linking(owned, ["0" * 64]) == set()
