"""Settings of the campaign service (env prefix CAMPAIGN_, shared parts under CLIENTELA_)."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path
from typing import ClassVar, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from clientela.campaign.application.decide_campaigns import ViewSettings
from clientela.campaign.domain.contact_policy import (
    DEFAULT_CHANNEL_CAPS,
    DEFAULT_QUIET_CHANNELS,
    CapLimits,
    ContactPolicy,
)
from clientela.campaign.domain.decision import DEFAULT_TIER_CHANNELS, DecisionPolicy
from clientela.campaign.domain.economics import (
    DEFAULT_CHANNEL_COSTS,
    DEFAULT_PRIOR_RATES,
    DEFAULT_RESPONSE_VALUE_SHARE,
    ChannelEconomics,
)
from clientela.shared.contracts import Channel, MessagePurpose, Tier
from clientela.shared.settings import ServiceSettings

DEV_ERASURE_KEY = "clientela-development-erasure-key"


class Caps(BaseModel):
    """Contacts allowed per local day and per ISO week (null = no cap)."""

    day: int | None = Field(default=None, ge=0)
    week: int | None = Field(default=None, ge=0)


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
        description="JSON: channels each tier may be contacted on, preferred first.",
    )
    channel_costs: dict[Channel, float] = Field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_COSTS),
        description="JSON: cost of one message per channel, base currency.",
    )
    channel_prior_rates: dict[Channel, float] = Field(
        default_factory=lambda: dict(DEFAULT_PRIOR_RATES),
        description="JSON: response rate assumed per channel before any evidence.",
    )
    prior_strength: float = Field(
        default=20.0, gt=0, description="How many sends the prior rate is worth."
    )
    response_value_share: dict[MessagePurpose, float] = Field(
        default_factory=lambda: dict(DEFAULT_RESPONSE_VALUE_SHARE),
        description="JSON: share of predicted value one response is worth, per purpose.",
    )
    prospect_value: float = Field(
        default=1000.0, ge=0, description="Value of a fully promising prospect (potential 1)."
    )
    habit_weight: float = Field(
        default=1.0, ge=0, description="How much a person's own channel habits lift a channel."
    )
    value_driver_trait: str = Field(default="value_driver", min_length=1)
    global_caps: Caps = Field(default_factory=lambda: Caps(day=1, week=3))
    channel_caps: dict[Channel, Caps] = Field(
        default_factory=lambda: {
            ch: Caps(day=c.day, week=c.week) for ch, c in DEFAULT_CHANNEL_CAPS.items()
        }
    )
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)
    quiet_channels: list[Channel] = Field(
        default_factory=lambda: sorted(DEFAULT_QUIET_CHANNELS),
        description="Channels that interrupt and so respect quiet hours.",
    )
    default_timezone: str = "UTC"
    timezone_trait: str = Field(default="timezone", min_length=1)
    cooldown_days: float = Field(default=30.0, ge=0)
    attribution_window_days: float = Field(default=14.0, gt=0)
    high_potential_threshold: float = Field(default=0.7, ge=0, le=1)
    sweep_interval_s: float = Field(
        default=60.0, gt=0, description="How often deferred triggers and inactivity are checked."
    )
    catalog_refresh_s: float = Field(
        default=5.0, gt=0, description="How often campaign definitions are reloaded."
    )
    max_poll_records: int = Field(
        default=2000,
        ge=1,
        description="Records per consumed batch (most are dropped cheaply; per-batch "
        "statements are then shared by more of them).",
    )
    trigger_ttl_hours: float = Field(
        default=48.0, gt=0, description="How long a trigger waits for its person's data."
    )
    last_seen_resolution_hours: float = Field(
        default=24.0,
        ge=0,
        description="Last-seen times are kept rounded down to this (inactivity fires this late).",
    )
    erasure_key: SecretStr = Field(
        default=SecretStr(DEV_ERASURE_KEY),
        description="Key of the hashes that remember erased profiles; set it in production.",
    )

    @model_validator(mode="after")
    def _production_needs_an_erasure_key(self) -> Self:
        if (
            self.auth.environment == "production"
            and self.erasure_key.get_secret_value() == DEV_ERASURE_KEY
        ):
            raise ValueError("CAMPAIGN_ERASURE_KEY must be set in production")
        return self

    @field_validator("tier_channels")
    @classmethod
    def _no_repeats(cls, value: dict[Tier, list[Channel]]) -> dict[Tier, list[Channel]]:
        for tier, channels in value.items():
            if len(set(channels)) != len(channels):
                raise ValueError(f"tier {tier.value}: channels must not repeat")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def decision_policy(self) -> DecisionPolicy:
        """Build the decision policy these settings describe."""
        return DecisionPolicy(
            global_holdout_share=self.global_holdout_share,
            tier_channels={tier: tuple(chs) for tier, chs in self.tier_channels.items()},
            economics=ChannelEconomics(
                costs=dict(self.channel_costs),
                prior_rates=dict(self.channel_prior_rates),
                prior_strength=self.prior_strength,
                response_value_share=dict(self.response_value_share),
                prospect_value=self.prospect_value,
                habit_weight=self.habit_weight,
            ),
            contact=ContactPolicy(
                global_caps=CapLimits(self.global_caps.day, self.global_caps.week),
                channel_caps={ch: CapLimits(c.day, c.week) for ch, c in self.channel_caps.items()},
                quiet_start=self.quiet_hours_start,
                quiet_end=self.quiet_hours_end,
                quiet_channels=frozenset(self.quiet_channels),
                default_timezone=self.default_timezone,
                timezone_trait=self.timezone_trait,
                cooldown_days=self.cooldown_days,
            ),
            value_driver_trait=self.value_driver_trait,
        )

    def view_settings(self) -> ViewSettings:
        """Build how the contact view is kept from these settings."""
        return ViewSettings(
            last_seen_resolution=timedelta(hours=self.last_seen_resolution_hours),
            trigger_ttl=timedelta(hours=self.trigger_ttl_hours),
            erasure_key=self.erasure_key.get_secret_value().encode(),
        )

    @property
    def attribution_window(self) -> timedelta:
        """Return the attribution window."""
        return timedelta(days=self.attribution_window_days)
