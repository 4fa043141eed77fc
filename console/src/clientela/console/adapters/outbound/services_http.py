"""The services' HTTP APIs over one pooled httpx client; the user's key goes with each call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

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
from clientela.console.application.ports import (
    KeyRejectedError,
    RequestRefusedError,
    ScopeDeniedError,
    ServiceUnavailableError,
    TimelineFilter,
)

D = TypeVar("D", bound=BaseModel)

# Used only to learn the key's scopes: a profile id that can never exist, so the probe
# answers 404 (allowed) or 401/403 (not allowed) and changes nothing.
PROBE_PROFILE_ID = "console-scope-probe-0000"


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


class HttpServices:
    """Calls profile, scoring and campaign; maps their answers to documents and errors."""

    def __init__(
        self, client: httpx.AsyncClient, *, profile: str, scoring: str, campaign: str
    ) -> None:
        self._client = client
        self._base = {
            "profile": profile.rstrip("/"),
            "scoring": scoring.rstrip("/"),
            "campaign": campaign.rstrip("/"),
        }

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        key: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        url = self._base[service] + path
        try:
            response = await self._client.request(
                method,
                url,
                params=params,
                json=json,
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(service, f"no answer ({type(exc).__name__})") from exc
        if response.status_code == 401:
            raise KeyRejectedError(service, "the key is not known")
        if response.status_code == 403:
            raise ScopeDeniedError(service, "the key lacks the scope this needs")
        if response.status_code >= 500:
            raise ServiceUnavailableError(service, f"answered {response.status_code}")
        return response

    async def _get(
        self,
        service: str,
        path: str,
        key: str,
        doc: type[D],
        params: dict[str, Any] | None = None,
    ) -> D | None:
        response = await self._call(service, "GET", path, key, params=params)
        if response.status_code == 404:
            return None
        return self._parse(service, response, doc)

    @staticmethod
    def _parse(service: str, response: httpx.Response, doc: type[D]) -> D:
        if response.status_code >= 400:
            raise RequestRefusedError(service, _detail(response))
        try:
            return doc.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServiceUnavailableError(service, "answered in an unexpected shape") from exc

    async def probe_read(self, key: str) -> None:
        """Raise KeyRejectedError or ScopeDeniedError unless the key may read."""
        await self._call("profile", "GET", _path("v1", "profiles", PROBE_PROFILE_ID), key)

    async def probe_admin(self, key: str) -> bool:
        """Return whether the key holds the admin scope (profile's split route decides)."""
        try:
            await self._call(
                "profile",
                "POST",
                _path("v1", "profiles", PROBE_PROFILE_ID, "split"),
                key,
                json={"identifiers": [{"type": "customer_id", "value": PROBE_PROFILE_ID}]},
            )
        except (ScopeDeniedError, KeyRejectedError):
            return False
        return True

    async def profile(self, key: str, profile_id: str) -> ProfileDoc | None:
        """Return a golden record (a merged id answers with its survivor)."""
        return await self._get("profile", _path("v1", "profiles", profile_id), key, ProfileDoc)

    async def profile_by(self, key: str, id_type: str, value: str) -> ProfileDoc | None:
        """Return the golden record owning an identifier."""
        path = _path("v1", "profiles", "by", id_type, value)
        return await self._get("profile", path, key, ProfileDoc)

    async def timeline(self, key: str, profile_id: str, page: TimelineFilter) -> TimelineDoc | None:
        """Return a page of a profile's touchpoints."""
        params: dict[str, Any] = {"limit": page.limit}
        if page.before is not None:
            params["before"] = page.before.isoformat()
        if page.before_event_id:
            params["before_event_id"] = page.before_event_id
        if page.channel:
            params["channel"] = page.channel
        path = _path("v1", "profiles", profile_id, "timeline")
        return await self._get("profile", path, key, TimelineDoc, params)

    async def split(
        self, key: str, profile_id: str, identifiers: Sequence[tuple[str, str]], reason: str
    ) -> SplitDoc:
        """Split identifiers off a profile (admin)."""
        body: dict[str, Any] = {"identifiers": [{"type": t, "value": v} for t, v in identifiers]}
        if reason:
            body["reason"] = reason
        path = _path("v1", "profiles", profile_id, "split")
        response = await self._call("profile", "POST", path, key, json=body)
        if response.status_code == 404:
            raise RequestRefusedError("profile", "the profile no longer exists")
        return self._parse("profile", response, SplitDoc)

    async def scores(self, key: str, profile_id: str) -> ScoresDoc | None:
        """Return a profile's scores, or None when never scored."""
        return await self._get("scoring", _path("v1", "scores", profile_id), key, ScoresDoc)

    async def tier_summary(self, key: str) -> TierSummaryDoc:
        """Return the tier summary with the Pareto curve."""
        doc = await self._get("scoring", "/v1/tiers/summary", key, TierSummaryDoc)
        if doc is None:
            raise ServiceUnavailableError("scoring", "has no tier summary")
        return doc

    async def messages(self, key: str, profile_id: str, limit: int = 50) -> MessagesDoc:
        """Return a person's campaign decisions."""
        path = _path("v1", "profiles", profile_id, "messages")
        doc = await self._get("campaign", path, key, MessagesDoc, {"limit": limit})
        return doc or MessagesDoc(profile_id=profile_id, messages=[])

    async def campaigns(self, key: str) -> list[CampaignDoc]:
        """Return every campaign."""
        doc = await self._get("campaign", "/v1/campaigns", key, _Campaigns)
        return doc.campaigns if doc is not None else []

    async def all_roi(self, key: str) -> list[CampaignRoiDoc]:
        """Return every campaign's results."""
        doc = await self._get("campaign", "/v1/roi", key, _RoiList)
        return doc.campaigns if doc is not None else []

    async def campaign_roi(self, key: str, campaign_id: str) -> CampaignRoiDoc | None:
        """Return one campaign's results."""
        path = _path("v1", "campaigns", campaign_id, "roi")
        return await self._get("campaign", path, key, CampaignRoiDoc)

    async def campaign_learning(self, key: str, campaign_id: str) -> list[LearningCellDoc] | None:
        """Return what a campaign has learned per channel, tier and segment."""
        path = _path("v1", "campaigns", campaign_id, "learning")
        doc = await self._get("campaign", path, key, _Learning)
        return doc.cells if doc is not None else None

    async def campaign_stats(self, key: str, campaign_id: str) -> CampaignStatsDoc | None:
        """Return a campaign's decision counts."""
        path = _path("v1", "campaigns", campaign_id, "stats")
        return await self._get("campaign", path, key, CampaignStatsDoc)


class _Campaigns(BaseModel):
    campaigns: list[CampaignDoc]


class _RoiList(BaseModel):
    campaigns: list[CampaignRoiDoc]


class _Learning(BaseModel):
    cells: list[LearningCellDoc]


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, str):
        return detail
    return f"answered {response.status_code}"
