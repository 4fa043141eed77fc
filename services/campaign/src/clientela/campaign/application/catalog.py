"""The campaigns in force: the file's and the API's, refreshed from the store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from clientela.campaign.application.ports import CampaignStore
from clientela.campaign.domain.catalog import CampaignCatalog
from clientela.campaign.domain.model import CampaignDefinition, TriggerKind

log = logging.getLogger(__name__)

FILE = "file"
API = "api"


class CampaignConflictError(Exception):
    """The change would clash with a stored campaign (duplicate id, or one from the file)."""


class UnknownCampaignError(LookupError):
    """No campaign with that id is defined."""


@dataclass(frozen=True, slots=True)
class StoredCampaign:
    """A campaign with where it was defined."""

    campaign: CampaignDefinition
    origin: str


class LiveCatalog:
    """Holds the current catalog; `refresh` reloads it from the store (every instance polls)."""

    def __init__(self, catalog: CampaignCatalog, origins: dict[str, str] | None = None) -> None:
        self._catalog = catalog
        self._origins = origins or {c.id: FILE for c in catalog}

    @property
    def catalog(self) -> CampaignCatalog:
        """Return the catalog in force."""
        return self._catalog

    def stored(self) -> list[StoredCampaign]:
        """Return every campaign with its origin."""
        return [StoredCampaign(c, self._origins.get(c.id, FILE)) for c in self._catalog]

    def active(self, now: datetime) -> list[CampaignDefinition]:
        """Return the campaigns enabled and inside their schedule now."""
        return [c for c in self._catalog if c.active_at(now)]

    def inactivity_days(self, now: datetime) -> set[int]:
        """Return the silent spells (days) active inactivity campaigns wait for."""
        return {
            c.inactive_days
            for c in self.active(now)
            if TriggerKind.INACTIVITY in c.trigger and c.inactive_days is not None
        }

    async def refresh(self, store: CampaignStore) -> None:
        """Reload the catalog from the store."""
        rows = await store.all()
        self._catalog = CampaignCatalog([c for c, _ in rows])
        self._origins = {c.id: origin for c, origin in rows}


async def seed_from_file(
    store: CampaignStore, live: LiveCatalog, file_campaigns: Sequence[CampaignDefinition]
) -> None:
    """Make the store's file campaigns those of the file, then load everything."""
    await store.sync_file(file_campaigns)
    await live.refresh(store)


async def create_campaign(
    campaign: CampaignDefinition, store: CampaignStore, live: LiveCatalog
) -> None:
    """Add a campaign through the API; the id must be new."""
    if not await store.create(campaign):
        raise CampaignConflictError(f"campaign {campaign.id!r} exists")
    await live.refresh(store)


async def update_campaign(
    campaign: CampaignDefinition, store: CampaignStore, live: LiveCatalog
) -> None:
    """Replace an API campaign; file campaigns are changed in the file, not here."""
    origin = await store.origin(campaign.id)
    if origin is None:
        raise UnknownCampaignError(campaign.id)
    if origin != API:
        raise CampaignConflictError(
            f"campaign {campaign.id!r} is declared in the campaign file: change it there"
        )
    await store.replace(campaign)
    await live.refresh(store)
