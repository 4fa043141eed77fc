"""Settings of the ingest service (env prefix INGEST_, shared components under CLIENTELA_*)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Literal, Self

import phonenumbers
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from clientela.ingest.domain.policy import IntakePolicy, PhoneCheck
from clientela.ingest.domain.segment import DEFAULT_TRACK_RULES, SegmentMapping, TrackRule
from clientela.shared.contracts import Channel, Direction, TouchpointKind
from clientela.shared.settings import ServiceSettings


class TrackRuleSpec(BaseModel):
    """A configured track mapping: the kind, and optionally channel, direction and details."""

    kind: TouchpointKind
    channel: Channel | None = None
    direction: Direction | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class IngestSettings(ServiceSettings):
    """Everything ingest reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")
    service_name: ClassVar[str] = "ingest"

    http_port: int = Field(default=8081, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64, description="HTTP worker processes.")
    gc_tuning: bool = Field(default=True, description="Freeze start-up objects, fewer GCs.")
    group_id: str = Field(default="clientela-ingest", description="Kafka consumer group.")
    consume_raw: bool = Field(default=True, description="Consume touchpoints.raw.v1.")
    raw_source: str = Field(
        default="raw-topic", description="`source` of raw-topic events that name none."
    )
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
    rate_limit_events_per_s: float = Field(
        default=20_000, ge=0, description="Events per second per key and process; 0: no limit."
    )
    rate_limit_burst: float = Field(default=40_000, ge=1, description="Bucket size per key.")
    rate_limits: dict[str, float] = Field(
        default_factory=dict, description="Per key name overrides of the events per second."
    )
    segment_track_kinds: dict[str, TouchpointKind | TrackRuleSpec] = Field(
        default_factory=dict, description="Track event name -> kind, merged over the defaults."
    )
    segment_unmapped_tracks: Literal["channel_kind", "ignore", "reject"] = "channel_kind"
    segment_server_channel: Channel = Field(
        default=Channel.WEB, description="Channel of messages from server-side libraries."
    )
    segment_consent_categories: dict[str, Channel] = Field(
        default_factory=dict, description="Consent category -> channel, beyond channel names."
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region the phone library knows")
        return region

    @model_validator(mode="after")
    def _workers_share_dedup(self) -> Self:
        if self.workers > 1 and self.cache.url.startswith("memory://"):
            # Each worker process would keep its own ids: duplicates would slip through.
            raise ValueError("INGEST_WORKERS > 1 needs CLIENTELA_CACHE_URL=redis://...")
        return self

    def intake_policy(self) -> IntakePolicy:
        """Return the per-event policy these settings describe."""
        return IntakePolicy(
            max_events=self.max_events_per_request,
            max_event_bytes=self.max_event_bytes,
            max_future_skew=timedelta(seconds=self.max_future_skew_s),
            default_region=self.default_region,
            phone_check=self.phone_check,
        )

    def segment_mapping(self) -> SegmentMapping:
        """Return the Segment translation these settings describe."""
        rules = dict(DEFAULT_TRACK_RULES)
        for name, spec in self.segment_track_kinds.items():
            if isinstance(spec, TrackRuleSpec):
                rules[name] = TrackRule(spec.kind, spec.channel, spec.direction, spec.details)
            else:
                rules[name] = TrackRule(spec)
        categories = {c.value: c for c in Channel}
        categories.update(
            {k.strip().lower(): v for k, v in self.segment_consent_categories.items()}
        )
        return SegmentMapping(
            track_rules=rules,
            unmapped_tracks=self.segment_unmapped_tracks,
            server_channel=self.segment_server_channel,
            consent_categories=categories,
        )
