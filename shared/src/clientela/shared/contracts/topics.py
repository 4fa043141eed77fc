"""The topic registry: every Kafka topic Clientela uses, declared once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from clientela.shared.contracts.base import Envelope
from clientela.shared.contracts.campaign import CampaignMessageEvent
from clientela.shared.contracts.dead_letter import DeadLetterEvent
from clientela.shared.contracts.profile import (
    ProfileChangedEvent,
    ProfileErasedEvent,
    ProfilesMergedEvent,
)
from clientela.shared.contracts.scoring import ScoresUpdatedEvent, TierChangedEvent
from clientela.shared.contracts.touchpoint import TouchpointRecorded


class CleanupPolicy(StrEnum):
    """Kafka cleanup policy: state topics are compacted, event streams are deleted by age."""

    DELETE = "delete"
    COMPACT = "compact"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: versioned name, key, partitions, cleanup policy and contract."""

    name: str
    key: str
    partitions: int
    cleanup_policy: CleanupPolicy
    contract: type[Envelope] | None
    producer: str
    public: bool = False
    description: str = ""

    @property
    def config(self) -> dict[str, str]:
        """Return the Kafka topic configuration for this topic."""
        return {"cleanup.policy": self.cleanup_policy.value}


RAW_TOUCHPOINTS = TopicSpec(
    name="touchpoints.raw.v1",
    key="any (upstream choice)",
    partitions=6,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=None,
    producer="upstream systems",
    description="Native or CloudEvents touchpoints written by upstream producers.",
)
TOUCHPOINTS = TopicSpec(
    name="touchpoints.v1",
    key="identity key: SHA-256 of the strongest identifier",
    partitions=6,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=TouchpointRecorded,
    producer="ingest",
    description="Validated, normalised, deduplicated touchpoints.",
)
TOUCHPOINTS_DLQ = TopicSpec(
    name="touchpoints.dlq.v1",
    key="source topic",
    partitions=1,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=DeadLetterEvent,
    producer="ingest",
    description="Raw touchpoints ingest could not accept, with the reason and original bytes.",
)
PROFILES = TopicSpec(
    name="profiles.v1",
    key="profile_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    contract=ProfileChangedEvent,
    producer="profile",
    description="Latest state of every profile; a null value (tombstone) after erasure.",
)
PROFILE_MERGES = TopicSpec(
    name="profiles.merges.v1",
    key="survivor profile_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=ProfilesMergedEvent,
    producer="profile",
    description="Profiles found to be one person.",
)
PROFILE_ERASURES = TopicSpec(
    name="profiles.erasures.v1",
    key="profile_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=ProfileErasedEvent,
    producer="profile",
    description="Erasure requests carried out; consumers drop what they hold.",
)
PROFILE_DLQ = TopicSpec(
    name="profile.dlq.v1",
    key="source topic",
    partitions=1,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=DeadLetterEvent,
    producer="profile",
    description="Records the profile service could not process.",
)
SCORES = TopicSpec(
    name="scores.v1",
    key="profile_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.COMPACT,
    contract=ScoresUpdatedEvent,
    producer="scoring",
    description="Latest scores of every profile.",
)
TIER_CHANGES = TopicSpec(
    name="tier-changes.v1",
    key="profile_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=TierChangedEvent,
    producer="scoring",
    public=True,
    description="Every move between value tiers, with reasons.",
)
SCORING_DLQ = TopicSpec(
    name="scoring.dlq.v1",
    key="source topic",
    partitions=1,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=DeadLetterEvent,
    producer="scoring",
    description="Records the scoring service could not process.",
)
CAMPAIGN_MESSAGES = TopicSpec(
    name="campaign-messages.v1",
    key="profile_id",
    partitions=6,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=CampaignMessageEvent,
    producer="campaign",
    public=True,
    description="Next-best-channel messages for delivery systems.",
)
CAMPAIGN_DLQ = TopicSpec(
    name="campaign.dlq.v1",
    key="source topic",
    partitions=1,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=DeadLetterEvent,
    producer="campaign",
    description="Records the campaign service could not process.",
)
CONSOLE_DLQ = TopicSpec(
    name="console.dlq.v1",
    key="source topic",
    partitions=1,
    cleanup_policy=CleanupPolicy.DELETE,
    contract=DeadLetterEvent,
    producer="console",
    description="Records the console's read model could not decode, with the reason.",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    RAW_TOUCHPOINTS,
    TOUCHPOINTS,
    TOUCHPOINTS_DLQ,
    PROFILES,
    PROFILE_MERGES,
    PROFILE_ERASURES,
    PROFILE_DLQ,
    SCORES,
    TIER_CHANGES,
    SCORING_DLQ,
    CAMPAIGN_MESSAGES,
    CAMPAIGN_DLQ,
    CONSOLE_DLQ,
)

# What each service consumes: the autoscaling manifests and the poison-record tests read it,
# and a test checks that each service's code references these topics.
CONSUMED_BY: Mapping[str, tuple[TopicSpec, ...]] = MappingProxyType(
    {
        "ingest": (RAW_TOUCHPOINTS,),
        "profile": (TOUCHPOINTS,),
        "scoring": (PROFILES, PROFILE_ERASURES),
        "campaign": (
            PROFILES,
            SCORES,
            TIER_CHANGES,
            TOUCHPOINTS,
            PROFILE_ERASURES,
            PROFILE_MERGES,
        ),
    }
)
