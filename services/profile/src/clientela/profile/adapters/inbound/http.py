"""HTTP inbound adapter: golden record, lookup, timeline; admin consent, split, erasure."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from clientela.profile.application.admin import (
    ProfileNotFoundError,
    SplitRefusedError,
    erase_profile,
    split_profile,
    update_consent,
)
from clientela.profile.application.ports import (
    ProfileCache,
    ProfileCacheUnavailableError,
    ProfileReader,
    TimelineQuery,
    UnitOfWork,
)
from clientela.profile.application.queries import (
    MAX_TIMELINE_PAGE,
    GoldenRecord,
    golden_record,
    golden_record_by_identifier,
    timeline_page,
)
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.domain.profile import as_utc
from clientela.shared.auth import KeyRing, require_scope
from clientela.shared.contracts import (
    Channel,
    ConsentState,
    ConsentStatus,
    Direction,
    Lifecycle,
    ProfileAggregates,
    Touchpoint,
    TouchpointKind,
    TouchpointRecorded,
    new_event_id,
)
from clientela.shared.contracts.base import ShortText, TraitValue
from clientela.shared.http import add_fast_route

LOOKUP_PATH = "/v1/profiles/by/{identifier_type}/{value}"


@dataclass(frozen=True, slots=True)
class ReadApi:
    """What the routes need, set on app.state.read_api by the wiring."""

    reader: ProfileReader
    policy: ProfilePolicy
    clock: Callable[[], datetime]
    unit_of_work: Callable[[], UnitOfWork] | None = None
    source: str = "profile"
    # Cleared by the admin routes after they commit (the reader may serve from it).
    cache: ProfileCache | None = None

    def uow(self) -> UnitOfWork:
        """Return a fresh unit of work (admin routes)."""
        if self.unit_of_work is None:
            raise RuntimeError("this API was built without write access")
        return self.unit_of_work()


# Async: FastAPI runs a plain function dependency in a worker thread, per request.
async def _read_api(request: Request) -> ReadApi:
    api: ReadApi = request.app.state.read_api
    return api


ReadApiDep = Annotated[ReadApi, Depends(_read_api)]


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class IdentifierView(_Response):
    """One identifier the profile owns."""

    type: str
    value: str


class ProfileView(_Response):
    """The golden record of a person."""

    profile_id: str
    version: int
    created_at: datetime
    updated_at: datetime
    lifecycle: Lifecycle
    identifiers: list[IdentifierView]
    identifier_types: list[str]
    reachable_channels: list[Channel]
    traits: dict[str, TraitValue]
    consent: dict[Channel, ConsentState]
    aggregates: ProfileAggregates


class TimelineItem(_Response):
    """One touchpoint on the timeline."""

    event_id: str
    occurred_at: datetime
    kind: TouchpointKind
    channel: Channel
    direction: Direction
    agent_id: str | None
    source: str
    correlation_id: str | None
    touchpoint: Touchpoint


class TimelineView(_Response):
    """A page of a timeline, newest first; pass next_before (and its event id) for more."""

    profile_id: str
    items: list[TimelineItem]
    next_before: datetime | None = Field(description="Cursor of the next page; null at the end.")
    next_before_event_id: str | None


class ConsentRequest(BaseModel):
    """A consent decision stated by the person through another system."""

    status: ConsentStatus
    source: ShortText = Field(description="The system or desk the decision came through.")
    occurred_at: datetime | None = Field(
        default=None, description="When the person decided (default now); latest decision wins."
    )
    request_id: ShortText | None = Field(
        default=None, description="Idempotency key: the same id is applied once."
    )


class IdentifierRef(BaseModel):
    """An identifier named in a request."""

    type: ShortText
    value: ShortText


class SplitRequest(BaseModel):
    """Identifiers to split off a wrongly merged profile."""

    identifiers: list[IdentifierRef] = Field(min_length=1, max_length=50)
    reason: ShortText | None = None


class SplitView(_Response):
    """Both sides of a split."""

    profile_id: str
    new_profile_id: str
    identifiers_moved: int
    touchpoints_moved: int


class ErasureReceiptView(_Response):
    """Proof of an erasure."""

    request_id: str
    profile_id: str
    erased_at: datetime
    identifiers_removed: int
    touchpoints_removed: int
    forwards_removed: int


def _profile_view(record: GoldenRecord) -> ProfileView:
    return ProfileView(
        profile_id=record.profile_id,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
        lifecycle=record.lifecycle,
        identifiers=[IdentifierView(type=t, value=v) for t, v in record.identifiers],
        identifier_types=list(record.identifier_types),
        reachable_channels=list(record.reachable_channels),
        traits=record.traits,
        consent=record.consent,
        aggregates=record.aggregates,
    )


def _timeline_item(event: TouchpointRecorded) -> TimelineItem:
    data = event.data
    return TimelineItem(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        kind=data.kind,
        channel=data.channel,
        direction=data.direction,
        agent_id=data.agent.agent_id if data.agent else None,
        source=event.source,
        correlation_id=event.correlation_id,
        touchpoint=data,
    )


def _not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} not found")


def lookup_handler(keyring: KeyRing) -> Callable[[Request], Awaitable[Response]]:
    """Return the handler of the identifier lookup, behind the 'read' scope."""
    require_read = require_scope(keyring, "read")

    async def look_up(request: Request) -> Response:
        await require_read(request)
        api: ReadApi = request.app.state.read_api
        params = request.path_params
        record = await golden_record_by_identifier(
            api.reader, params["identifier_type"], params["value"], api.clock(), api.policy
        )
        if record is None:
            raise _not_found("identifier")
        # The bytes FastAPI gives for a ProfileView answer, without its per-request machinery.
        view = _profile_view(record)
        body = view.__pydantic_serializer__.to_json(view, by_alias=True)
        return Response(body, media_type="application/json")

    return look_up


def serve_lookup_fast(app: FastAPI, keyring: KeyRing) -> None:
    """Answer the identifier lookup ahead of the middleware stack (the hot read route)."""
    add_fast_route(app, "GET", LOOKUP_PATH, lookup_handler(keyring))


def profile_router(keyring: KeyRing) -> APIRouter:
    """Return the read routes, every one behind the 'read' scope."""
    router = APIRouter(
        prefix="/v1/profiles",
        tags=["profiles"],
        dependencies=[Depends(require_scope(keyring, "read"))],
        responses={401: {"description": "No or unknown API key"}, 403: {"description": "Scope"}},
    )

    look_up = lookup_handler(keyring)

    @router.get(
        "/by/{identifier_type}/{value}",
        response_model=ProfileView,
        responses={404: {"description": "Unknown"}},
    )
    async def get_by_identifier(identifier_type: str, value: str, request: Request) -> Response:
        """Return the golden record of the profile owning an identifier."""
        # Served by the fast lane in the service (serve_lookup_fast); this declares it.
        del identifier_type, value
        return await look_up(request)

    @router.get("/{profile_id}", responses={404: {"description": "Unknown profile"}})
    async def get_profile(profile_id: str, api: ReadApiDep) -> ProfileView:
        """Return a profile's golden record."""
        record = await golden_record(api.reader, profile_id, api.clock(), api.policy)
        if record is None:
            raise _not_found("profile")
        return _profile_view(record)

    @router.get("/{profile_id}/timeline", responses={404: {"description": "Unknown profile"}})
    async def get_timeline(
        profile_id: str,
        api: ReadApiDep,
        limit: Annotated[int, Query(ge=1, le=MAX_TIMELINE_PAGE)] = 50,
        before: datetime | None = None,
        before_event_id: str | None = None,
        kind: TouchpointKind | None = None,
        channel: Channel | None = None,
    ) -> TimelineView:
        """Return a page of a profile's touchpoints, newest first."""
        query = TimelineQuery(
            limit=limit,
            before=as_utc(before) if before is not None else None,
            before_event_id=before_event_id,
            kind=kind,
            channel=channel,
        )
        page = await timeline_page(api.reader, profile_id, query)
        if page is None:
            raise _not_found("profile")
        return TimelineView(
            profile_id=page.profile_id,
            items=[_timeline_item(event) for event in page.items],
            next_before=page.next_before,
            next_before_event_id=page.next_before_event_id,
        )

    return router


def admin_router(keyring: KeyRing) -> APIRouter:
    """Return the admin routes (consent, split, erasure), every one behind the 'admin' scope."""
    router = APIRouter(
        prefix="/v1/profiles",
        tags=["profiles-admin"],
        dependencies=[Depends(require_scope(keyring, "admin"))],
        responses={
            401: {"description": "No or unknown API key"},
            403: {"description": "Scope"},
            404: {"description": "Unknown profile"},
        },
    )

    @router.put("/{profile_id}/consent/{channel}")
    async def put_consent(
        profile_id: str, channel: Channel, body: ConsentRequest, api: ReadApiDep
    ) -> ProfileView:
        """Record a consent decision for one channel; answer the updated golden record."""
        try:
            profile = await update_consent(
                api.uow(),
                profile_id,
                channel,
                body.status,
                api.policy,
                stated_by=body.source,
                occurred_at=as_utc(body.occurred_at or api.clock()),
                update_id=body.request_id or new_event_id(),
                source=api.source,
                clock=api.clock,
                cache=api.cache,
            )
        except ProfileNotFoundError:
            raise _not_found("profile") from None
        record = await golden_record(api.reader, profile.profile_id, api.clock(), api.policy)
        if record is None:
            raise _not_found("profile")
        return _profile_view(record)

    @router.post("/{profile_id}/split", responses={409: {"description": "Split refused"}})
    async def post_split(profile_id: str, body: SplitRequest, api: ReadApiDep) -> SplitView:
        """Split identifiers off a wrongly merged profile; both sides are recomputed."""
        try:
            outcome = await split_profile(
                api.uow(),
                profile_id,
                [(ref.type, ref.value) for ref in body.identifiers],
                api.policy,
                request_id=new_event_id(),
                source=api.source,
                clock=api.clock,
                cache=api.cache,
            )
        except ProfileNotFoundError:
            raise _not_found("profile") from None
        except SplitRefusedError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return SplitView(
            profile_id=outcome.profile_id,
            new_profile_id=outcome.new_profile_id,
            identifiers_moved=outcome.identifiers_moved,
            touchpoints_moved=outcome.touchpoints_moved,
        )

    @router.delete(
        "/{profile_id}",
        responses={503: {"description": "Erased, but the lookup cache could not be cleared"}},
    )
    async def delete_profile(
        profile_id: str, api: ReadApiDep, request_id: str | None = None
    ) -> ErasureReceiptView:
        """Erase a person's data; answer the receipt (the same one when asked again)."""
        try:
            receipt = await erase_profile(
                api.uow(),
                profile_id,
                request_id=request_id or new_event_id(),
                source=api.source,
                clock=api.clock,
                cache=api.cache,
            )
        except ProfileNotFoundError:
            raise _not_found("profile") from None
        except ProfileCacheUnavailableError:
            # The erasure is committed; personal data may still sit in the lookup cache.
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "erased, but the lookup cache could not be cleared: ask again",
            ) from None
        return ErasureReceiptView(
            request_id=receipt.request_id,
            profile_id=receipt.profile_id,
            erased_at=receipt.erased_at,
            identifiers_removed=receipt.identifiers_removed,
            touchpoints_removed=receipt.touchpoints_removed,
            forwards_removed=receipt.forwards_removed,
        )

    return router
