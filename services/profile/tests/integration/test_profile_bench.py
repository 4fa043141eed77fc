"""The benchmark entry point runs end to end at a tiny size (so it cannot rot)."""

from __future__ import annotations

import json
from pathlib import Path

from clientela.profile import bench


def test_bench_runs_and_writes_flat_json(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    bench.main(
        [
            "--touchpoints",
            "600",
            "--people",
            "200",
            "--batch",
            "100",
            "--database-url",
            postgres_url,
            "--cache-url",
            redis_url,
            "--output",
            str(output),
        ]
    )
    result = json.loads(output.read_text())
    assert result["touchpoints"] == 600
    assert result["events_per_s"] > 0
    assert result["baseline_events_per_s"] > 0
    assert result["lookups"] > 0
    assert result["lookup_cache"] == "redis"
    assert result["consumer_processes"] == 2
    assert result["cpu_us_per_event"] > 0
    assert result["postgres_cpu_us_per_event"] > 0
    assert 0 < result["round_trips_per_batch_without_merge"] <= 8
    # Each touchpoint writes at least its timeline row; a batch's statements are shared.
    assert result["postgres_rows_per_event"] >= 1
    assert 0 < result["statements_per_event"] < 1
    assert result["decode_us_per_event"] > 0
    assert result["contract_decode_us_per_event"] > 0
    assert all(not isinstance(v, dict | list) for v in result.values())
