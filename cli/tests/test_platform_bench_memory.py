"""The memory-growth figure the benchmark reports for long runs."""

from __future__ import annotations

import pytest

from clientela.platform.bench import rss_slope_mb_per_min


def test_flat_memory_has_no_slope() -> None:
    assert rss_slope_mb_per_min([200.0] * 120) == 0.0


def test_steady_growth_is_reported_per_minute() -> None:
    # Once-a-second samples growing 0.5 MB/s are 30 MB per minute, noise or not.
    samples = [100.0 + 0.5 * i + (0.3 if i % 2 else -0.3) for i in range(300)]
    assert rss_slope_mb_per_min(samples) == pytest.approx(30.0, rel=0.01)


def test_too_few_samples_have_no_slope() -> None:
    assert rss_slope_mb_per_min([]) == 0.0
    assert rss_slope_mb_per_min([5.0]) == 0.0
