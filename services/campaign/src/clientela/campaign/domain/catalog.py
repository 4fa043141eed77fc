"""The set of campaign definitions in force, validated as a whole."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from clientela.campaign.domain.model import CampaignDefinition


class CampaignDefinitionError(ValueError):
    """A campaign definition that must not run."""


class CampaignCatalog:
    """Campaign definitions in definition order, looked up by id."""

    def __init__(self, campaigns: list[CampaignDefinition]) -> None:
        by_id: dict[str, CampaignDefinition] = {}
        for campaign in campaigns:
            if campaign.id in by_id:
                raise CampaignDefinitionError(f"campaign id {campaign.id!r} is defined twice")
            by_id[campaign.id] = campaign
        self._by_id = by_id

    def __iter__(self) -> Iterator[CampaignDefinition]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, campaign_id: str) -> CampaignDefinition | None:
        """Return the campaign with that id, or None."""
        return self._by_id.get(campaign_id)

    def enabled(self) -> list[CampaignDefinition]:
        """Return the campaigns that are switched on (schedules aside)."""
        return [c for c in self._by_id.values() if c.enabled]


def parse_campaign(entry: object, label: str = "campaign") -> CampaignDefinition:
    """Validate one campaign; the error names the campaign and each bad field."""
    try:
        return CampaignDefinition.model_validate(entry)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors(include_url=False))
        raise CampaignDefinitionError(f"campaign {label}: {problems}") from exc


def parse_campaigns(document: Mapping[str, Any]) -> CampaignCatalog:
    """Validate a parsed campaign document (`[[campaigns]]` tables) into a catalog."""
    unknown = sorted(set(document) - {"campaigns"})
    if unknown:
        raise CampaignDefinitionError(f"unknown top-level key(s): {', '.join(unknown)}")
    entries = document.get("campaigns", [])
    if not isinstance(entries, list):
        raise CampaignDefinitionError("'campaigns' must be an array of tables ([[campaigns]])")
    campaigns: list[CampaignDefinition] = []
    for position, entry in enumerate(entries, start=1):
        label = entry.get("id", f"#{position}") if isinstance(entry, dict) else f"#{position}"
        campaigns.append(parse_campaign(entry, str(label)))
    return CampaignCatalog(campaigns)


def _describe(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {message}" if location else message
