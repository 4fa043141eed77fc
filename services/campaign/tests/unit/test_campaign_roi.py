"""Uplift and ROI arithmetic, and the slicing of results by channel and tier."""

from __future__ import annotations

import pytest

from clientela.campaign.application.ports import ResultCell
from clientela.campaign.application.queries import roi_of
from clientela.campaign.domain.model import Outcome
from clientela.campaign.domain.roi import GroupResult, uplift
from clientela.shared.contracts import Channel, Tier


def test_uplift_compares_treated_with_control() -> None:
    figures = uplift(
        GroupResult(size=1000, converted=120, revenue=12_000, cost=50),
        GroupResult(size=1000, converted=80, revenue=8_000),
    )

    assert figures.treated_rate == pytest.approx(0.12)
    assert figures.control_rate == pytest.approx(0.08)
    assert figures.uplift == pytest.approx(0.04)
    assert figures.uplift_low is not None
    assert figures.uplift_high is not None
    assert 0 < figures.uplift_low < 0.04 < figures.uplift_high < 0.08
    assert figures.incremental_conversions == pytest.approx(40)
    assert figures.incremental_revenue == pytest.approx(4_000)
    assert figures.roi == pytest.approx((4_000 - 50) / 50)


def test_small_groups_get_a_wide_interval_and_no_control_gives_no_uplift() -> None:
    small = uplift(GroupResult(10, 1, cost=1), GroupResult(10, 1))
    assert small.uplift == 0
    assert small.uplift_low is not None
    assert small.uplift_low < -0.2
    assert small.uplift_high is not None
    assert small.uplift_high > 0.2

    alone = uplift(GroupResult(10, 3, cost=1), GroupResult())
    assert alone.uplift is None
    assert alone.roi is None


def cell(
    outcome: Outcome, channel: Channel, tier: Tier, n: int, conv: int, rev: float, cost: float
) -> ResultCell:
    return ResultCell("c1", outcome, channel, tier, n, conv, conv, rev, cost)


def test_results_are_sliced_by_channel_and_tier_with_would_be_channels_for_control() -> None:
    cells = [
        cell(Outcome.SENT, Channel.EMAIL, Tier.B, 100, 10, 1000, 5),
        cell(Outcome.CONTROL, Channel.EMAIL, Tier.B, 100, 5, 500, 0),
        cell(Outcome.SENT, Channel.PHONE, Tier.A, 50, 20, 4000, 300),
        cell(Outcome.CONTROL, Channel.PHONE, Tier.A, 50, 10, 2000, 0),
        cell(Outcome.SUPPRESSED, Channel.SMS, Tier.C, 7, 0, 0, 0),
    ]

    roi = roi_of("c1", cells)

    assert roi.total.treated.size == 150
    assert roi.total.control.size == 150
    assert roi.total.cost == 305
    by_channel = {r.channel: r.figures for r in roi.by_channel}
    assert set(by_channel) == {Channel.EMAIL, Channel.PHONE}
    assert by_channel[Channel.PHONE].incremental_revenue == pytest.approx(2000)
    assert by_channel[Channel.PHONE].roi == pytest.approx((2000 - 300) / 300)
    assert {r.tier for r in roi.by_tier} == {Tier.A, Tier.B}
    assert len(roi.by_channel_tier) == 2
