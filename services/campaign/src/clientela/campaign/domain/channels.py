"""Channel choice: the tier's preferred order, limited by the campaign, reach and consent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clientela.campaign.domain.model import Contact
from clientela.shared.contracts import Channel, ConsentStatus, Lifecycle, Reason


@dataclass(frozen=True, slots=True)
class ChannelChoice:
    """The chosen channel (None when no channel may be used) and why."""

    channel: Channel | None
    reasons: tuple[Reason, ...]


def refusal(channel: Channel, contact: Contact) -> Reason | None:
    """Return why the channel may not be used for this contact, or None when it may."""
    if channel not in contact.reachable_channels:
        return Reason(
            code="channel_unreachable",
            detail=f"{channel.value}: no contact point on the profile",
            value=channel.value,
        )
    status = contact.consent.get(channel)
    if status is ConsentStatus.OPTED_OUT:
        return Reason(
            code="channel_opted_out",
            detail=f"{channel.value}: the person opted out",
            value=channel.value,
        )
    # Prospects have no relationship yet: only an explicit opt-in allows contacting them.
    if contact.lifecycle is Lifecycle.PROSPECT and status is not ConsentStatus.OPTED_IN:
        return Reason(
            code="channel_no_opt_in",
            detail=f"{channel.value}: prospects need an explicit opt-in",
            value=channel.value,
        )
    return None


def choose_channel(
    tier_channels: Sequence[Channel], allowed: Sequence[Channel], contact: Contact
) -> ChannelChoice:
    """Pick the tier's first channel that the campaign allows and the person permits."""
    candidates = [channel for channel in tier_channels if channel in allowed]
    if not candidates:
        return ChannelChoice(
            None,
            (
                Reason(
                    code="no_channel_in_policy",
                    detail=(
                        f"tier channels [{', '.join(c.value for c in tier_channels)}] share none "
                        f"with the campaign's [{', '.join(c.value for c in allowed)}]"
                    ),
                ),
            ),
        )
    skipped: list[Reason] = []
    for rank, channel in enumerate(candidates, start=1):
        refused = refusal(channel, contact)
        if refused is not None:
            skipped.append(refused)
            continue
        chosen = Reason(
            code="channel_selected",
            detail=(
                f"{channel.value}: choice {rank} of {len(candidates)} for this tier and campaign, "
                "reachable and consented"
            ),
            value=channel.value,
        )
        return ChannelChoice(channel, (*skipped, chosen))
    none_left = Reason(
        code="no_eligible_channel",
        detail=f"none of {len(candidates)} candidate channel(s) is reachable and consented",
        value=len(candidates),
    )
    return ChannelChoice(None, (*skipped, none_left))
