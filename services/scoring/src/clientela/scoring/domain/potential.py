"""Potential of a prospect: how closely they resemble the customers who became tier A.

Only what is known before a first purchase counts (channel mix, engagement, inbound share),
taken from the last snapshot of each customer while still a prospect. Each part is a number
in 0..1 a person can check; the potential is their mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from clientela.scoring.domain.profile_view import ProfileView
from clientela.scoring.domain.reasons import ReasonData, reason


@dataclass(frozen=True, slots=True)
class ProspectFeatures:
    """What a prospect shows before buying: where they come from and how engaged they are."""

    channel_mix: Mapping[str, float]
    touchpoints: float
    inbound_share: float

    def as_json(self) -> dict[str, object]:
        """Return a JSON-ready form, to be stored with the profile's scores."""
        return {
            "channel_mix": dict(self.channel_mix),
            "touchpoints": self.touchpoints,
            "inbound_share": self.inbound_share,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProspectFeatures:
        """Rebuild features stored with as_json."""
        mix = data.get("channel_mix")
        return cls(
            channel_mix={str(k): float(v) for k, v in mix.items()} if isinstance(mix, dict) else {},
            touchpoints=float(data.get("touchpoints", 0.0)),  # type: ignore[arg-type]
            inbound_share=float(data.get("inbound_share", 0.0)),  # type: ignore[arg-type]
        )


# How far a prospect's potential may move before it is published again: consumers read it
# against thresholds and as a share of a prospect's value, where a twentieth of the scale
# changes no decision worth a record per page view; the sweep publishes the exact one.
POTENTIAL_TOLERANCE = 0.05


def potential_moved(published: float | None, current: float | None) -> bool:
    """Return whether a prospect's potential moved enough to be published again."""
    if published is None or current is None:
        return published is not current
    return abs(current - published) > POTENTIAL_TOLERANCE


def prospect_features(profile: ProfileView) -> ProspectFeatures:
    """Return the pre-purchase features of a profile from its aggregates."""
    agg = profile.aggregates
    counted = sum(agg.counts_by_channel.values())
    mix = {c: n / counted for c, n in agg.counts_by_channel.items() if n > 0} if counted else {}
    directed = agg.inbound_count + agg.outbound_count
    return ProspectFeatures(
        channel_mix=mix,
        touchpoints=float(agg.touchpoint_count),
        inbound_share=agg.inbound_count / directed if directed else 0.0,
    )


# Steps of the prospect fingerprint: touch counts in octaves (1-2, 3-6, 7-14, 15-30, ...),
# shares in tenths. A page view moves a prospect within its buckets most of the time; the
# potential it would publish then differs by at most about a sixth (engagement, a third of
# the mean, is off by up to half inside an octave), and the sweep publishes it exactly.
_TOUCH_STEPS_PER_DOUBLING = 1
_SHARE_STEPS = 10


def prospect_buckets(features: ProspectFeatures) -> tuple[object, ...]:
    """Return the coarse buckets of a prospect's features: a change within them is not news."""
    mix = sorted(
        (channel, step)
        for channel, share in features.channel_mix.items()
        if (step := round(share * _SHARE_STEPS)) > 0
    )
    touches = math.floor(_TOUCH_STEPS_PER_DOUBLING * math.log2(1.0 + max(features.touchpoints, 0)))
    return (touches, round(features.inbound_share * _SHARE_STEPS), mix)


def potential(
    features: ProspectFeatures, reference: ProspectFeatures | None
) -> tuple[float | None, tuple[ReasonData, ...]]:
    """Return the resemblance (0..1) to the reference, with the three parts as reasons."""
    if reference is None:
        return None, (
            reason(
                code="potential",
                detail="no tier A customer seen as a prospect yet: nothing to compare with",
            ),
        )
    channels = set(features.channel_mix) | set(reference.channel_mix)
    # Histogram intersection: the share of the mix both have in common.
    mix = sum(
        min(features.channel_mix.get(c, 0.0), reference.channel_mix.get(c, 0.0)) for c in channels
    )
    high = max(features.touchpoints, reference.touchpoints)
    engagement = min(features.touchpoints, reference.touchpoints) / high if high else 1.0
    inbound = 1.0 - abs(features.inbound_share - reference.inbound_share)
    score = (mix + engagement + inbound) / 3
    top = max(reference.channel_mix, key=lambda c: reference.channel_mix[c], default="none")
    return score, (
        reason(
            code="potential",
            value=round(score, 3),
            detail="resemblance to customers who became A, before their first purchase",
        ),
        reason(
            code="potential_channel_mix",
            value=round(mix, 3),
            detail=f"channel mix in common with tier A prospects (their main channel: {top})",
        ),
        reason(
            code="potential_engagement",
            value=round(engagement, 3),
            detail=f"{features.touchpoints:.0f} touchpoints against "
            f"{reference.touchpoints:.1f} on average for tier A prospects",
        ),
        reason(
            code="potential_inbound",
            value=round(inbound, 3),
            detail=f"reaches out to us {features.inbound_share:.0%} of the time "
            f"(tier A prospects: {reference.inbound_share:.0%})",
        ),
    )
