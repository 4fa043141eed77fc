"""Ports: the services' HTTP APIs and the console's read model, as the use cases see them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from clientela.console.application.documents import (
    CampaignDoc,
    CampaignRoiDoc,
    CampaignStatsDoc,
    LearningCellDoc,
    MessagesDoc,
    ProfileDoc,
    ScoresDoc,
    SplitDoc,
    TierSummaryDoc,
    TimelineDoc,
)
from clientela.console.domain.base import MoveCount


class ServiceError(Exception):
    """A service could not answer as asked."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message


class KeyRejectedError(ServiceError):
    """The service does not know the key (401): the session is over."""


class ScopeDeniedError(ServiceError):
    """The key lacks the scope the request needs (403)."""


class ServiceUnavailableError(ServiceError):
    """The service did not answer, or answered with a server error."""


class RequestRefusedError(ServiceError):
    """The service refused the request (409/422), with its reason."""


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """Which page of a timeline to fetch."""

    limit: int = 25
    before: datetime | None = None
    before_event_id: str | None = None
    channel: str | None = None


class Services(Protocol):
    """The services' read APIs (and the one admin action the console offers)."""

    async def probe_read(self, key: str) -> None:
        """Raise KeyRejectedError or ScopeDeniedError unless the key may read."""
        ...

    async def probe_admin(self, key: str) -> bool:
        """Return whether the key holds the admin scope."""
        ...

    async def profile(self, key: str, profile_id: str) -> ProfileDoc | None:
        """Return a golden record (a merged id answers with its survivor)."""
        ...

    async def profile_by(self, key: str, id_type: str, value: str) -> ProfileDoc | None:
        """Return the golden record owning an identifier."""
        ...

    async def timeline(self, key: str, profile_id: str, page: TimelineFilter) -> TimelineDoc | None:
        """Return a page of a profile's touchpoints."""
        ...

    async def split(
        self, key: str, profile_id: str, identifiers: Sequence[tuple[str, str]], reason: str
    ) -> SplitDoc:
        """Split identifiers off a profile (admin)."""
        ...

    async def scores(self, key: str, profile_id: str) -> ScoresDoc | None:
        """Return a profile's scores, or None when never scored."""
        ...

    async def tier_summary(self, key: str) -> TierSummaryDoc:
        """Return the tier summary with the Pareto curve."""
        ...

    async def messages(self, key: str, profile_id: str, limit: int = 50) -> MessagesDoc:
        """Return a person's campaign decisions."""
        ...

    async def campaigns(self, key: str) -> list[CampaignDoc]:
        """Return every campaign."""
        ...

    async def all_roi(self, key: str) -> list[CampaignRoiDoc]:
        """Return every campaign's results."""
        ...

    async def campaign_roi(self, key: str, campaign_id: str) -> CampaignRoiDoc | None:
        """Return one campaign's results."""
        ...

    async def campaign_learning(self, key: str, campaign_id: str) -> list[LearningCellDoc] | None:
        """Return what a campaign has learned per channel, tier and segment."""
        ...

    async def campaign_stats(self, key: str, campaign_id: str) -> CampaignStatsDoc | None:
        """Return a campaign's decision counts."""
        ...


@dataclass(frozen=True, slots=True)
class TierMoveRow:
    """One tier move of one profile."""

    at: datetime
    from_tier: str | None
    to_tier: str
    predicted_value: float


@dataclass(frozen=True, slots=True)
class MergeRow:
    """One merge a profile took part in."""

    at: datetime
    survivor_id: str
    merged_id: str
    rule: str
    identifier_types: list[str]
    identifier_fingerprints: list[str]


@dataclass(frozen=True, slots=True)
class RankedProfile:
    """A profile's latest tier and value as the read model knows them."""

    profile_id: str
    tier: str
    predicted_value: float
    segment: str | None
    lifecycle: str | None


@dataclass(frozen=True, slots=True)
class ReadModelStatus:
    """How much the read model has seen, and how recently."""

    tier_moves: int
    scored_profiles: int
    profiles: int
    merges: int
    last_event_at: datetime | None


class ReadModel(Protocol):
    """The console's own tables, fed from the public and compacted topics."""

    async def tier_history(self, profile_id: str) -> list[TierMoveRow]:
        """Return a profile's tier moves, oldest first."""
        ...

    async def merges(self, profile_id: str) -> list[MergeRow]:
        """Return the merges a profile took part in, newest first."""
        ...

    async def move_span(self) -> tuple[datetime, datetime] | None:
        """Return the times of the first and the last tier move."""
        ...

    async def move_counts(self, width_s: int, since: datetime) -> list[MoveCount]:
        """Return tier moves per period of width_s seconds since a moment."""
        ...

    async def channel_mix(self) -> dict[str, dict[str, float]]:
        """Return touchpoints per channel summed over the profiles of each current tier."""
        ...

    async def preferred_channels(self) -> dict[str, dict[str, float]]:
        """Return, per current tier, how many profiles prefer each inbound channel."""
        ...

    async def top_profiles(self, limit: int) -> list[RankedProfile]:
        """Return the profiles with the highest predicted value."""
        ...

    async def status(self) -> ReadModelStatus:
        """Return what the read model holds."""
        ...
