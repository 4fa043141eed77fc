"""Settings of the profile service (env prefix PROFILE_, shared parts under CLIENTELA_)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import ClassVar

import phonenumbers
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from clientela.profile.domain.identity import (
    DEFAULT_BLOCKED,
    DEFAULT_LIMITS,
    DEFAULT_PRIORITY,
    IdentityRules,
)
from clientela.profile.domain.policy import (
    DEFAULT_CHANNEL_COSTS,
    ProfilePolicy,
    Survivorship,
    TraitRules,
)
from clientela.shared.contracts import Channel
from clientela.shared.contracts.currencies import ISO_4217_CODES
from clientela.shared.settings import ServiceSettings


def _known_currency(code: str) -> str:
    if code not in ISO_4217_CODES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


class ProfileSettings(ServiceSettings):
    """Everything the profile service is configured with."""

    model_config = SettingsConfigDict(env_prefix="PROFILE_", extra="ignore")
    service_name: ClassVar[str] = "profile"

    http_port: int = Field(default=8082, ge=0, le=65535)
    group_id: str = Field(default="clientela-profile", description="Kafka consumer group.")
    source: str = Field(default="profile", description="`source` of the events it emits.")
    base_currency: str = Field(default="EUR", description="Currency of spend and cost figures.")
    fx_rates: dict[str, Decimal] = Field(
        default_factory=dict,
        description='JSON map currency -> rate to the base currency, e.g. {"USD": "0.92"}.',
    )
    channel_costs: dict[Channel, Decimal] = Field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_COSTS),
        description="JSON map channel -> cost to serve a touchpoint that states no cost.",
    )
    lapse_after_days: int = Field(
        default=365, ge=1, description="A customer with no sale for this long has lapsed."
    )
    identifier_priority: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PRIORITY),
        description="Identifier types strongest first; types left out rank after these.",
    )
    identifier_limits: dict[str, int] = Field(
        default_factory=dict,
        description="JSON map type -> most identifiers of that type on one profile.",
    )
    default_identifier_limit: int = Field(
        default=5, ge=1, description="Limit of the types identifier_limits leaves out."
    )
    blocked_identifiers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="JSON map type -> values (or *-patterns) that never link anything.",
    )
    use_default_blocklist: bool = Field(
        default=True, description="Also block the built-in test and placeholder values."
    )
    default_region: str = Field(
        default="US", description="Region of phone numbers without a + prefix (as ingest)."
    )
    default_survivorship: Survivorship = Survivorship.MOST_RECENT
    trait_survivorship: dict[str, Survivorship] = Field(
        default_factory=dict,
        description="JSON map trait -> most_recent | most_frequent | source_priority.",
    )
    source_priority: list[str] = Field(
        default_factory=list, description="Sources strongest first, for source_priority traits."
    )
    preference_half_life_days: float = Field(
        default=90, gt=0, description="Half-life of an inbound contact in channel preference."
    )
    lookup_cache_ttl_s: int = Field(
        default=300,
        ge=0,
        description="Lifetime of a cached profile in the lookup cache (0: no cache). The "
        "cache is CLIENTELA_CACHE_URL: Redis, or memory:// (in-process: one replica only).",
    )
    lookup_cache_grace_s: float = Field(
        default=2.0,
        gt=0,
        description="Writers delete changed profiles again after this; slower fills are dropped.",
    )

    @field_validator("identifier_limits")
    @classmethod
    def _positive_limits(cls, value: dict[str, int]) -> dict[str, int]:
        if any(limit < 1 for limit in value.values()):
            raise ValueError("identifier limits must be at least 1")
        return value

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region the phone library knows")
        return region

    @field_validator("base_currency")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return _known_currency(value)

    @field_validator("fx_rates")
    @classmethod
    def _check_rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            _known_currency(code)
            if rate <= 0:
                raise ValueError(f"the rate of {code} must be positive")
        return value

    @field_validator("channel_costs")
    @classmethod
    def _fill_costs(cls, value: dict[Channel, Decimal]) -> dict[Channel, Decimal]:
        if any(cost < 0 for cost in value.values()):
            raise ValueError("channel costs cannot be negative")
        # A partial map overrides the defaults it names and keeps the others.
        return {**DEFAULT_CHANNEL_COSTS, **value}

    @model_validator(mode="after")
    def _base_rate_is_one(self) -> ProfileSettings:
        rate = self.fx_rates.get(self.base_currency)
        if rate is not None and rate != 1:
            raise ValueError("the base currency's own rate must be 1 (or left out)")
        return self

    def policy(self) -> ProfilePolicy:
        """Return the domain rules these settings describe."""
        return ProfilePolicy(
            base_currency=self.base_currency,
            fx_rates=dict(self.fx_rates),
            channel_costs=dict(self.channel_costs),
            lapse_after=timedelta(days=self.lapse_after_days),
            identity=self.identity_rules(),
            traits=TraitRules(
                default=self.default_survivorship,
                per_trait=dict(self.trait_survivorship),
                source_priority=tuple(self.source_priority),
            ),
            preference_half_life=timedelta(days=self.preference_half_life_days),
        )

    def identity_rules(self) -> IdentityRules:
        """Return the identity rules these settings describe."""
        blocked: dict[str, tuple[str, ...]] = (
            {k: tuple(v) for k, v in DEFAULT_BLOCKED.items()} if self.use_default_blocklist else {}
        )
        for id_type, values in self.blocked_identifiers.items():
            blocked[id_type] = (*blocked.get(id_type, ()), *values)
        return IdentityRules(
            priority=tuple(dict.fromkeys(self.identifier_priority)),
            limits={**DEFAULT_LIMITS, **self.identifier_limits},
            default_limit=self.default_identifier_limit,
            blocked=blocked,
            default_region=self.default_region,
        )
