"""Settings of the scoring service (env prefix SCORING_, shared parts under CLIENTELA_)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from clientela.shared.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    """Everything the scoring service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")
    service_name: ClassVar[str] = "scoring"

    http_port: int = Field(default=8083, ge=0, le=65535)
    group_id: str = Field(default="clientela-scoring", min_length=1)
    half_life_days: float = Field(
        default=365.0, gt=0, description="Days after which past spend counts half."
    )
    a_share: float = Field(
        default=0.80, gt=0, le=1, description="Share of total predicted value tier A brings."
    )
    b_share: float = Field(
        default=0.95, gt=0, le=1, description="Cumulative share tiers A and B bring together."
    )
    cutoff_refresh_s: float = Field(
        default=5.0, ge=0, description="Age after which the ranked population is reloaded."
    )
    outbox_batch_size: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _shares_in_order(self) -> Self:
        if self.b_share < self.a_share:
            raise ValueError("SCORING_B_SHARE must be at least SCORING_A_SHARE")
        return self
