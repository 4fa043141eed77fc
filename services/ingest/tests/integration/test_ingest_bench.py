"""A tiny run of the ingest benchmark, so that it cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

from clientela.ingest import bench
from clientela.shared.settings import KafkaSettings


def test_bench_runs_end_to_end_and_writes_flat_json(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    output = tmp_path / "bench-ingest.json"
    bench.main(
        [
            "--output", str(output),
            "--duration", "1",
            "--warmup", "0.2",
            "--baseline-duration", "0.3",
            "--workers", "1",
            "--connections", "2",
            "--batch", "10",
            "--bootstrap", kafka_settings.bootstrap_servers,
            "--cache-url", "memory://",
        ]
    )  # fmt: skip
    result = json.loads(output.read_text())
    assert result["events_per_s"] > 0
    assert result["baseline_events_per_s"] > 0
    assert result["request_errors"] == 0
    assert result["events_on_topic"] == result["events_accepted_with_warmup"]
    assert all(not isinstance(v, dict | list) for v in result.values())
