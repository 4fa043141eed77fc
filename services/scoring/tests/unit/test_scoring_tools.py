"""The bench and evaluate entry points run end to end on tiny inputs (so they cannot rot)."""

from __future__ import annotations

import json
from pathlib import Path

from clientela.scoring import bench, evaluate


def test_bench_runs_small(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    bench.main(["--customers", "2000", "--profiles", "1000", "--output", str(out)])
    figures = json.loads(out.read_text())
    assert figures["events_per_s"] > 0
    assert figures["sweep_customers"] == 2000
    assert {"p50_ms", "p99_ms", "baseline_events_per_s", "ratio", "sweep_s"} <= set(figures)


def test_evaluate_takes_a_csv(tmp_path: Path) -> None:
    rows = ["customer_id,date,amount"] + [
        f"c{c},2024-{1 + (c + 3 * k) % 12:02d}-{1 + k:02d},{10 + c % 7}.50"
        for c in range(60)
        for k in range(1 + c % 5)
    ]
    data = tmp_path / "tx.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "eval.json"
    evaluate.main(
        ["--data", str(data), "--cutoff", "2024-06-30", "--end", "2024-12-31", "--output", str(out)]
    )
    figures = json.loads(out.read_text())
    assert figures["cutoff"] == "2024-06-30"
    assert figures["customers"] > 0
    assert figures["actual_repeat_transactions"] >= 0
