"""The benchmark entry point runs end to end on a tiny population (so it cannot rot)."""

from __future__ import annotations

import json
from pathlib import Path

from clientela.campaign import bench


def test_the_bench_writes_one_flat_json_object(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"

    bench.main(
        ["--profiles", "300", "--touchpoints", "600", "--batch", "100", "--output", str(output)]
    )

    figures = json.loads(output.read_text())
    assert figures["profiles"] == 300
    assert figures["touchpoints"] == 600
    assert figures["records_touchpoints"] == 600
    assert figures["records_profiles"] == figures["records_scores"] == 600
    assert figures["campaign_cpu_us_per_touchpoint"] > 0
    assert figures["baseline_events_per_s"] > 0
    assert figures["decisions"] > 0
    # Touchpoints are marked as ingest marks them; most name no message and are never read.
    assert figures["touchpoints_marked"] is True
    assert 0 < figures["records_skipped_undecoded"] < 600
    assert figures["statements_per_batch"] > 0
    assert all(not isinstance(v, dict | list) for v in figures.values())


def test_newcomers_enter_a_tier_on_their_first_scores(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"

    bench.main(
        [
            *("--profiles", "200", "--touchpoints", "400", "--batch", "100"),
            *("--new-share", "0.5", "--output", str(output)),
        ]
    )

    figures = json.loads(output.read_text())
    assert figures["new_share"] == 0.5
    # About half the touchpoints come from someone new, and each enters a tier once.
    assert 150 <= figures["records_tier_changes"] <= 300
    assert figures["decisions"] > 0
    # No PostgreSQL here: its own backends have nothing to report.
    assert figures["postgres_own_cpu_us_per_touchpoint"] == 0


def test_on_postgresql_the_bench_reports_its_own_backends_cpu(
    tmp_path: Path, postgres_url: str
) -> None:
    output = tmp_path / "bench.json"

    bench.main(
        [
            *("--profiles", "200", "--touchpoints", "400", "--batch", "100"),
            *("--new-share", "0.3", "--database-url", postgres_url, "--output", str(output)),
        ]
    )

    figures = json.loads(output.read_text())
    assert figures["backend_database"] == "postgresql"
    assert figures["postgres_own_cpu_us_per_touchpoint"] > 0
    assert figures["postgres_own_cpu_us_per_record"] > 0
    assert figures["statements_per_touchpoint"] > 0
