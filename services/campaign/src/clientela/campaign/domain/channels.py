"""Channel eligibility: the tier's policy, the campaign's channels, reach and consent."""

from __future__ import annotations

from collections.abc import Sequence

from clientela.campaign.domain.model import Contact, Reason
from clientela.shared.contracts import Channel, ConsentStatus, Lifecycle


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


def eligible_channels(
    tier_channels: Sequence[Channel], allowed: Sequence[Channel], contact: Contact
) -> tuple[list[Channel], list[Reason]]:
    """Return the channels the tier policy and the campaign allow and the person permits."""
    candidates = [channel for channel in tier_channels if channel in allowed]
    if not candidates:
        return [], [
            Reason(
                code="no_channel_in_policy",
                detail=(
                    f"tier channels [{', '.join(c.value for c in tier_channels)}] share none "
                    f"with the campaign's [{', '.join(c.value for c in allowed)}]"
                ),
            )
        ]
    eligible: list[Channel] = []
    refused: list[Reason] = []
    for channel in candidates:
        reason = refusal(channel, contact)
        if reason is None:
            eligible.append(channel)
        else:
            refused.append(reason)
    return eligible, refused
