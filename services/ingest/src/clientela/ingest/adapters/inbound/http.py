"""HTTP routes of ingest: read the body, call the intake use case, map its outcome."""

# No `from __future__ import annotations` here: FastAPI must evaluate the route's Annotated
# dependencies, which refer to names local to touchpoint_router.
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from clientela.ingest.application.accept_touchpoints import (
    IntakeReport,
    Outcome,
    TooManyEventsError,
    TouchpointIntake,
)
from clientela.ingest.application.ports import DeduplicationUnavailableError, PublishFailedError
from clientela.ingest.domain.native_format import MalformedBodyError, unpack_native
from clientela.ingest.domain.touchpoints import IntakeContext
from clientela.shared.auth import KeyRing, Principal, require_scope
from clientela.shared.codec import now_ms
from clientela.shared.contracts import FieldError

log = logging.getLogger(__name__)


class BodyTooLargeError(Exception):
    """The request body exceeds the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")


class EventResult(BaseModel):
    """The outcome of one event of the request, by its position."""

    index: int
    event_id: str | None
    status: Outcome
    errors: list[FieldError] = Field(default_factory=list)


class IntakeResponse(BaseModel):
    """Counts and per-event results of a touchpoint submission."""

    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]

    @classmethod
    def from_report(cls, report: IntakeReport) -> "IntakeResponse":
        """Build the response from the use case's report."""
        return cls(
            accepted=report.count(Outcome.ACCEPTED),
            duplicates=report.count(Outcome.DUPLICATE),
            rejected=report.count(Outcome.REJECTED),
            results=[
                EventResult(
                    index=o.index, event_id=o.event_id, status=o.status, errors=list(o.errors)
                )
                for o in report.outcomes
            ],
        )


class ErrorResponse(BaseModel):
    """Why a whole request was refused."""

    detail: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """When the request arrived, as an aware datetime and as epoch milliseconds."""

    at: datetime
    ms: int


def arrival() -> Arrival:
    """Return the arrival time of the request (resolved before any other dependency)."""
    ms = now_ms()
    return Arrival(datetime.fromtimestamp(ms / 1000, UTC), ms)


def intake(request: Request) -> TouchpointIntake:
    """Return the intake use case wired at start."""
    found: TouchpointIntake = request.app.state.intake
    return found


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing it as soon as it exceeds the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(limit)
    return bytes(body)


_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'A native touchpoint object, a JSON array of them, or {"batch": [...]}.',
        "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
    }
}


def touchpoint_router(keyring: KeyRing, max_body_bytes: int) -> APIRouter:
    """Return the router of the touchpoint submission endpoint."""
    router = APIRouter(tags=["touchpoints"])
    writer = require_scope(keyring, "write")

    @router.post(
        "/v1/touchpoints",
        summary="Submit touchpoints",
        response_model=IntakeResponse,
        openapi_extra=_BODY_DOC,
        responses={
            400: {"model": ErrorResponse, "description": "Malformed JSON or body shape"},
            401: {"model": ErrorResponse, "description": "Missing or unknown API key"},
            403: {"model": ErrorResponse, "description": "The key lacks the write scope"},
            413: {"model": ErrorResponse, "description": "Body or event count over the limit"},
            422: {"model": IntakeResponse, "description": "Every event was rejected"},
            503: {"model": ErrorResponse, "description": "Broker or dedup store unavailable"},
        },
    )
    async def post_touchpoints(
        arrived: Annotated[Arrival, Depends(arrival)],
        principal: Annotated[Principal, Depends(writer)],
        use_case: Annotated[TouchpointIntake, Depends(intake)],
        request: Request,
        response: Response,
    ) -> IntakeResponse:
        submitted = unpack_native(await read_body(request, max_body_bytes))
        context = IntakeContext(principal.name, arrived.at, arrived.ms)
        report = await use_case.accept(submitted, context)
        if report.all_rejected:
            response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return IntakeResponse.from_report(report)

    return router


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Map the refusals of a whole request to status codes."""

    def refuse(code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=code, headers=headers)

    @app.exception_handler(MalformedBodyError)
    async def _malformed(_request: Request, exc: MalformedBodyError) -> JSONResponse:
        return refuse(status.HTTP_400_BAD_REQUEST, str(exc))

    @app.exception_handler(BodyTooLargeError)
    @app.exception_handler(TooManyEventsError)
    async def _too_large(_request: Request, exc: Exception) -> JSONResponse:
        return refuse(status.HTTP_413_CONTENT_TOO_LARGE, str(exc))

    @app.exception_handler(PublishFailedError)
    @app.exception_handler(DeduplicationUnavailableError)
    async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # Nothing was accepted; the same request can be retried as a whole.
        log.warning("refusing a submission: %s", exc)
        return refuse(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "touchpoints could not be stored right now; retry later",
            {"Retry-After": str(retry_after_s)},
        )
