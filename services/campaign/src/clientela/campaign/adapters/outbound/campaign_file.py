"""Loads campaign definitions from the packaged TOML file or an operator's own file."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from clientela.campaign.domain.catalog import (
    CampaignCatalog,
    CampaignDefinitionError,
    parse_campaigns,
)

PACKAGED_FILE = "campaigns.toml"


def load_catalog(path: Path | None = None) -> CampaignCatalog:
    """Load and validate campaigns from `path`, or the packaged defaults when None."""
    if path is None:
        text = resources.files("clientela.campaign").joinpath(PACKAGED_FILE).read_text("utf-8")
        origin = f"packaged {PACKAGED_FILE}"
    else:
        text = path.read_text("utf-8")
        origin = str(path)
    return parse_catalog(text, origin)


def parse_catalog(text: str, origin: str = "campaign file") -> CampaignCatalog:
    """Parse TOML text into a validated catalog; errors name the file."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignDefinitionError(f"{origin}: not valid TOML: {exc}") from exc
    try:
        return parse_campaigns(document)
    except CampaignDefinitionError as exc:
        raise CampaignDefinitionError(f"{origin}: {exc}") from exc
