"""Settings of the ingest service (env prefix INGEST_, shared components under CLIENTELA_*)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import phonenumbers
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from clientela.ingest.domain.policy import IntakePolicy, PhoneCheck
from clientela.shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    """Everything ingest reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")
    service_name: ClassVar[str] = "ingest"

    http_port: int = Field(default=8081, ge=0, le=65535)
    group_id: str = Field(default="clientela-ingest", description="Kafka consumer group.")
    default_region: str = Field(
        default="US", description="ISO 3166 region used to read phone numbers without +prefix."
    )
    phone_check: PhoneCheck = Field(
        default="possible", description="'possible' (length/prefix) or 'valid' (allocated range)."
    )
    max_future_skew_s: int = Field(default=300, ge=0, description="Tolerated clock skew.")
    max_events_per_request: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=512_000, ge=1024, description="Larger bodies get 413.")
    max_event_bytes: int = Field(default=32_768, ge=256, description="Larger events are rejected.")
    dedup_ttl_s: int = Field(default=7 * 24 * 3600, ge=1, description="How long ids are kept.")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503 answers.")

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region the phone library knows")
        return region

    def intake_policy(self) -> IntakePolicy:
        """Return the per-event policy these settings describe."""
        return IntakePolicy(
            max_events=self.max_events_per_request,
            max_event_bytes=self.max_event_bytes,
            max_future_skew=timedelta(seconds=self.max_future_skew_s),
            default_region=self.default_region,
            phone_check=self.phone_check,
        )
