"""Settings of the scoring service (env prefix SCORING_, shared parts under CLIENTELA_)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from clientela.shared.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    """Everything the scoring service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SCORING_", extra="ignore")
    service_name: ClassVar[str] = "scoring"

    http_port: int = Field(default=8083, ge=0, le=65535)
    group_id: str = Field(default="clientela-scoring", min_length=1)
    half_life_days: float = Field(
        default=365.0, gt=0, description="Cold-start model: days after which spend counts half."
    )
    a_share: float = Field(
        default=0.80, gt=0, le=1, description="Share of total predicted value tier A brings."
    )
    b_share: float = Field(
        default=0.95, gt=0, le=1, description="Cumulative share tiers A and B bring together."
    )
    hysteresis: float = Field(
        default=0.05, ge=0, lt=1, description="Relative band a value must clear to change tier."
    )
    horizon_weeks: float = Field(
        default=52.0, gt=0, description="Horizon of the predicted value (expected spend)."
    )
    at_risk_probability_alive: float = Field(
        default=0.5, ge=0, le=1, description="Tier A customers below this P(alive) are at risk."
    )
    gross_margin: float = Field(
        default=0.30, ge=0, le=1, description="Margin on spend, against the cost to serve."
    )
    rfm_groups: int = Field(default=5, ge=2, le=5, description="Quantile groups per RFM letter.")
    cutoff_refresh_s: float = Field(
        default=5.0, ge=0, description="Age after which streamed batches re-rank the population."
    )
    sweep_interval_s: float = Field(
        default=900.0, ge=0, description="Seconds between population sweeps (0: none)."
    )
    refit_interval_s: float = Field(
        default=86_400.0, ge=0, description="Seconds between scheduled refits (0: none)."
    )
    fit_min_customers: int = Field(default=200, ge=2)
    fit_min_repeat_customers: int = Field(default=20, ge=1)
    fit_sample_size: int = Field(default=200_000, ge=100)
    sweep_chunk: int = Field(default=1000, ge=1, description="Changed customers per transaction.")
    outbox_batch_size: int = Field(default=500, ge=1)
    erasure_key: SecretStr | None = Field(
        default=None,
        description="Key of the erased-profile markers (HMAC-SHA256); unset: a development key.",
    )

    @model_validator(mode="after")
    def _shares_in_order(self) -> Self:
        if self.b_share < self.a_share:
            raise ValueError("SCORING_B_SHARE must be at least SCORING_A_SHARE")
        return self
