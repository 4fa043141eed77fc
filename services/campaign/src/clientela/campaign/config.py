"""Settings of the campaign service (env prefix CAMPAIGN_, shared parts under CLIENTELA_)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from clientela.campaign.domain.decision import DEFAULT_TIER_CHANNELS
from clientela.shared.contracts import Channel, Tier
from clientela.shared.settings import ServiceSettings


class CampaignSettings(ServiceSettings):
    """The campaign service's settings."""

    model_config = SettingsConfigDict(env_prefix="CAMPAIGN_", extra="ignore")
    service_name: ClassVar[str] = "campaign"

    http_port: int = Field(default=8084, ge=0, le=65535)
    group_id: str = Field(default="clientela-campaign", min_length=1)
    consumer_name: str = Field(default="campaign", min_length=1)
    campaigns_file: Path | None = Field(
        default=None, description="TOML campaign definitions; unset means the packaged ones."
    )
    global_holdout_share: float = Field(
        default=0.05, ge=0, le=1, description="Share of people kept out of every campaign."
    )
    tier_channels: dict[Tier, list[Channel]] = Field(
        default_factory=lambda: {tier: list(chs) for tier, chs in DEFAULT_TIER_CHANNELS.items()},
        description="JSON: preferred outbound channel order per tier.",
    )

    @field_validator("tier_channels")
    @classmethod
    def _no_repeats(cls, value: dict[Tier, list[Channel]]) -> dict[Tier, list[Channel]]:
        for tier, channels in value.items():
            if len(set(channels)) != len(channels):
                raise ValueError(f"tier {tier.value}: channels must not repeat")
        return value
