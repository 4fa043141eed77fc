"""Campaign definitions in SQL: the file's (synchronised at start) and the API's."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.campaign.adapters.outbound.tables import CampaignTables
from clientela.campaign.application.catalog import API, FILE
from clientela.campaign.domain.model import CampaignDefinition
from clientela.shared.contracts import utc_now
from clientela.shared.db import upsert_insert


def _json(campaign: CampaignDefinition) -> dict[str, object]:
    return campaign.model_dump(mode="json")


class SqlCampaignStore:
    """Stores campaign definitions; every instance reads the same table."""

    def __init__(self, engine: AsyncEngine, tables: CampaignTables) -> None:
        self._engine = engine
        self._t = tables.campaigns

    async def all(self) -> list[tuple[CampaignDefinition, str]]:
        """Return every stored campaign with its origin, file ones first, in order."""
        t = self._t
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(t).order_by(t.c.position, t.c.campaign_id))
            return [(CampaignDefinition.model_validate(r.definition), r.origin) for r in rows]

    async def sync_file(self, campaigns: Sequence[CampaignDefinition]) -> None:
        """Make the stored file campaigns exactly these (API campaigns are left alone)."""
        t = self._t
        now = utc_now()
        ids = [c.id for c in campaigns]
        async with self._engine.begin() as conn:
            stale = delete(t).where(t.c.origin == FILE)
            if ids:
                stale = stale.where(t.c.campaign_id.not_in(ids))
            await conn.execute(stale)
            if not campaigns:
                return
            insert = upsert_insert(conn)(t)
            # The file wins over an API campaign of the same id: the file is what operators
            # review and deploy.
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=["campaign_id"],
                    set_={
                        "origin": insert.excluded.origin,
                        "position": insert.excluded.position,
                        "definition": insert.excluded.definition,
                        "updated_at": insert.excluded.updated_at,
                    },
                ),
                [
                    {
                        "campaign_id": c.id,
                        "origin": FILE,
                        "position": position,
                        "definition": _json(c),
                        "updated_at": now,
                    }
                    for position, c in enumerate(campaigns)
                ],
            )

    async def origin(self, campaign_id: str) -> str | None:
        """Return where a stored campaign came from, or None when unknown."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(self._t.c.origin).where(self._t.c.campaign_id == campaign_id)
            )
            return str(value) if value is not None else None

    async def create(self, campaign: CampaignDefinition) -> bool:
        """Store a new API campaign; False when the id is taken."""
        t = self._t
        async with self._engine.begin() as conn:
            last = await conn.scalar(select(func.max(t.c.position)))
            result = await conn.execute(
                upsert_insert(conn)(t)
                .on_conflict_do_nothing(index_elements=["campaign_id"])
                .returning(t.c.campaign_id),
                [
                    {
                        "campaign_id": campaign.id,
                        "origin": API,
                        "position": (int(last) if last is not None else 0) + 1_000,
                        "definition": _json(campaign),
                        "updated_at": utc_now(),
                    }
                ],
            )
            return bool(result.scalars().all())

    async def replace(self, campaign: CampaignDefinition) -> None:
        """Replace an API campaign."""
        t = self._t
        async with self._engine.begin() as conn:
            await conn.execute(
                update(t)
                .where(t.c.campaign_id == campaign.id, t.c.origin == API)
                .values(definition=_json(campaign), updated_at=utc_now())
            )
