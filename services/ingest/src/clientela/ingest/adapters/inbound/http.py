"""HTTP routes of ingest: read the body, translate its format, call the intake, map the outcome.

Routes take the raw request and answer with pre-encoded JSON: on the hot path FastAPI's
dependency injection and response validation cost more than the work itself. The pydantic
models below document the answers in the OpenAPI description.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from clientela.ingest.adapters.metrics import IngestMetrics
from clientela.ingest.application.accept_touchpoints import (
    IntakeReport,
    Outcome,
    Submission,
    TooManyEventsError,
    TouchpointIntake,
)
from clientela.ingest.application.ports import (
    DeduplicationUnavailableError,
    PublishFailedError,
    RateCharge,
    RateLimitedError,
    SharedRateLimit,
)
from clientela.ingest.domain import cloudevents
from clientela.ingest.domain.native_format import (
    MalformedBodyError,
    compact_size,
    decode_json,
    unpack_native,
)
from clientela.ingest.domain.rate_limit import RateLimiter
from clientela.ingest.domain.segment import (
    MalformedSegmentError,
    SegmentMapping,
    SegmentType,
    message_items,
    unpack_segment,
)
from clientela.ingest.domain.touchpoints import IntakeContext
from clientela.shared.auth import KeyRing, Principal, Scope, presented_key
from clientela.shared.codec import now_ms
from clientela.shared.contracts import FieldError
from clientela.shared.http import add_fast_route

log = logging.getLogger(__name__)

JSON = "application/json"


class BodyTooLargeError(Exception):
    """The request body exceeds the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} bytes")


class UnsupportedEncodingError(Exception):
    """The body is compressed with an encoding ingest does not read."""


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
    ignored: int = 0
    results: list[EventResult]


class SegmentResponse(IntakeResponse):
    """The Segment answer: `success` as Segment's API gives it, plus the per-event results."""

    success: bool


class ErrorResponse(BaseModel):
    """Why a whole request was refused."""

    detail: str


class _Error(msgspec.Struct):
    path: str
    reason: str


class _Result(msgspec.Struct):
    index: int
    event_id: str | None
    status: str
    errors: list[_Error]


_encoder = msgspec.json.Encoder()


def encode_report(report: IntakeReport, **extra: Any) -> bytes:
    """Encode the per-event report of a submission as the JSON answer."""
    counts = dict.fromkeys(Outcome, 0)
    results = []
    for o in report.outcomes:
        counts[o.status] += 1
        errors = [_Error(e.path, e.reason) for e in o.errors]
        results.append(_Result(o.index, o.event_id, o.status.value, errors))
    body = {
        **extra,
        "accepted": counts[Outcome.ACCEPTED],
        "duplicates": counts[Outcome.DUPLICATE],
        "rejected": counts[Outcome.REJECTED],
        "ignored": counts[Outcome.IGNORED],
        "results": results,
    }
    return _encoder.encode(body)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body (gunzipped when so encoded), refusing it once it exceeds the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError(limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return bytes(body)
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedEncodingError(f"content-encoding {encoding!r} is not supported")
    inflater = zlib.decompressobj(wbits=47 if encoding == "gzip" else 15)
    try:
        # The limit applies to the decompressed body too: a small bomb stays small.
        plain = inflater.decompress(bytes(body), limit + 1)
    except zlib.error as exc:
        raise MalformedBodyError(f"body is not valid {encoding}: {exc}") from exc
    if len(plain) > limit:
        raise BodyTooLargeError(limit)
    return plain


def authorize(keyring: KeyRing, raw_key: str | None, scope: Scope) -> Principal:
    """Return the key's principal, or raise 401 (no or unknown key) / 403 (missing scope)."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if raw_key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required", challenge)
    principal = keyring.authenticate(raw_key)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key", challenge)
    if scope not in principal.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key lacks the '{scope}' scope")
    return principal


@dataclass(frozen=True, slots=True)
class HttpIntake:
    """What the routes need, wired once per process."""

    keyring: KeyRing
    metrics: IngestMetrics
    limiter: RateLimiter | SharedRateLimit
    segment: SegmentMapping
    max_body_bytes: int
    max_event_bytes: int


def _intake(request: Request) -> TouchpointIntake:
    found: TouchpointIntake = request.app.state.intake
    return found


_STATUS_OF: dict[type[Exception], int] = {
    MalformedBodyError: 400,
    MalformedSegmentError: 400,
    BodyTooLargeError: 413,
    TooManyEventsError: 413,
    UnsupportedEncodingError: 415,
    RateLimitedError: 429,
    PublishFailedError: 503,
    DeduplicationUnavailableError: 503,
}


async def _measured(
    deps: HttpIntake, endpoint: str, handle: Callable[[], Awaitable[Response]]
) -> Response:
    started = time.perf_counter()
    code = 500
    try:
        response = await handle()
        code = response.status_code
        return response
    except HTTPException as exc:
        code = exc.status_code
        raise
    except Exception as exc:
        code = _STATUS_OF.get(type(exc), 500)
        raise
    finally:
        deps.metrics.observe_request(endpoint, code, started)


def _arrival() -> tuple[datetime, int]:
    ms = now_ms()
    return datetime.fromtimestamp(ms / 1000, UTC), ms


async def _accept(
    deps: HttpIntake,
    use_case: TouchpointIntake,
    submissions: Sequence[Submission],
    context: IntakeContext,
    principal: Principal,
) -> IntakeReport:
    """Spend the key's rate limit and accept the submission; 429 when the events are not there."""
    limiter = deps.limiter
    charge = None
    try:
        if isinstance(limiter, RateLimiter):
            wait = limiter.take(principal.name, len(submissions))  # in process: no await
            if wait > 0:
                raise RateLimitedError(RateLimiter.retry_after(wait))
        else:
            # Shared limits are spent with the dedup claim: one round trip to Redis, not two.
            charge = RateCharge(limiter, principal.name, len(submissions))
        return await use_case.accept(submissions, context, charge=charge)
    except RateLimitedError:
        deps.metrics.rate_limited.labels(principal.name).inc()
        raise


def _native_submissions(
    request: Request, body: bytes, max_event_bytes: int
) -> Sequence[Submission]:
    """Split a /v1/touchpoints body by its format: native, or CloudEvents in any HTTP mode."""
    headers = request.headers
    content_type = headers.get("content-type", JSON).lower()
    if "ce-specversion" in headers:
        attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce-") and len(k) > 3}
        return [cloudevents.from_binary(attributes, headers.get("content-type"), body)]
    if content_type.startswith(cloudevents.STRUCTURED):
        return [cloudevents.from_structured(decode_json(body), len(body))]
    if content_type.startswith(cloudevents.BATCH):
        document = decode_json(body)
        if not isinstance(document, list) or not document:
            raise MalformedBodyError("a CloudEvents batch must be a non-empty JSON array")
        return [cloudevents.from_structured(item, compact_size(item)) for item in document]
    return unpack_native(body, max_event_bytes)


def _interface(request: Request) -> str:
    headers = request.headers
    ce = "ce-specversion" in headers or "cloudevents" in headers.get("content-type", "")
    return "cloudevents" if ce else "native"


_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}, {"basic": []}]
_TOUCHPOINTS_DOC: dict[str, Any] = {
    "security": _SECURITY,
    "requestBody": {
        "required": True,
        "description": (
            'A native touchpoint object, a JSON array of them, or {"batch": [...]}; or a '
            "CloudEvent (structured, batch, or binary mode with ce-* headers) whose data is "
            "a native touchpoint."
        ),
        "content": {
            "application/json": {"schema": {"type": ["object", "array"]}},
            cloudevents.STRUCTURED: {"schema": {"type": "object"}},
            cloudevents.BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    },
}
_SEGMENT_DOC: dict[str, Any] = {
    "security": [*_SECURITY, {}],
    "requestBody": {
        "required": True,
        "description": "A Segment message (or {batch, context, integrations, sentAt}); the "
        "write key is the Basic user name or `writeKey` in the body.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
}


def _refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Malformed JSON or body shape",
        401: "Missing or unknown API key",
        403: "The key lacks the write scope",
        413: "Body or event count over the limit",
        415: "Unsupported content encoding",
        429: "Rate limit of the key exceeded (see Retry-After)",
        503: "Broker or dedup store unavailable (see Retry-After)",
    }
    return {c: {"model": ErrorResponse, "description": described[c]} for c in codes}


async def submit_native(deps: HttpIntake, request: Request) -> Response:
    """Answer POST /v1/touchpoints: native touchpoints or CloudEvents in any HTTP mode."""

    async def handle() -> Response:
        received_at, arrived_ms = _arrival()
        principal = authorize(deps.keyring, presented_key(request), "write")
        body = await read_body(request, deps.max_body_bytes)
        submissions = _native_submissions(request, body, deps.max_event_bytes)
        use_case = _intake(request)
        if len(submissions) > use_case.policy.max_events:
            raise TooManyEventsError(len(submissions), use_case.policy.max_events)
        context = IntakeContext(principal.name, received_at, arrived_ms)
        report = await _accept(deps, use_case, submissions, context, principal)
        deps.metrics.observe_report(_interface(request), report)
        code = status.HTTP_422_UNPROCESSABLE_CONTENT if report.all_rejected else 200
        return Response(encode_report(report), code, media_type=JSON)

    return await _measured(deps, "touchpoints", handle)


def serve_native_fast(app: FastAPI, deps: HttpIntake) -> None:
    """Answer POST /v1/touchpoints ahead of the middleware stack, with the same handler.

    The route stays declared (and documented) on the router; the shared fast lane skips the
    router's path matching, the middleware stack and FastAPI's endpoint machinery, which cost
    more per request than validating a 100-event batch with the fast decoder. Refusals are
    answered by the handlers `install_error_handlers` registers.
    """

    async def handle(request: Request) -> Response:
        return await submit_native(deps, request)

    add_fast_route(app, "POST", "/v1/touchpoints", handle)


def refusal(exc: Exception, retry_after_s: int) -> JSONResponse | None:
    """Return the answer that refuses a whole request for this error, or None if unknown."""
    code = _STATUS_OF.get(type(exc))
    if code is None:
        return None
    headers: dict[str, str] | None = None
    detail = str(exc)
    if isinstance(exc, RateLimitedError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif code == status.HTTP_503_SERVICE_UNAVAILABLE:
        # Nothing was accepted; the same request can be retried as a whole.
        log.warning("refusing a submission: %s", exc)
        detail = "touchpoints could not be stored right now; retry later"
        headers = {"Retry-After": str(retry_after_s)}
    return JSONResponse({"detail": detail}, status_code=code, headers=headers)


def intake_router(deps: HttpIntake) -> APIRouter:
    """Return the router of every submission endpoint."""
    router = APIRouter()

    @router.post(
        "/v1/touchpoints",
        tags=["touchpoints"],
        summary="Submit native touchpoints or CloudEvents",
        response_model=IntakeResponse,
        openapi_extra=_TOUCHPOINTS_DOC,
        responses={
            **_refusals(400, 401, 403, 413, 415, 429, 503),
            422: {"model": IntakeResponse, "description": "Every event was rejected"},
        },
    )
    async def post_touchpoints(request: Request) -> Response:
        return await submit_native(deps, request)

    def segment_route(endpoint: SegmentType | Literal["batch"], path: str) -> None:
        async def post_segment(request: Request) -> Response:
            async def handle() -> Response:
                received_at, arrived_ms = _arrival()
                key = presented_key(request)
                body = await read_body(request, deps.max_body_bytes)
                document = decode_json(body)
                if key is None and isinstance(document, dict):
                    written = document.get("writeKey")
                    key = written if isinstance(written, str) and written else None
                principal = authorize(deps.keyring, key, "write")
                sizes = [compact_size(m) for m in message_items(document, endpoint)]
                submissions = unpack_segment(document, endpoint, received_at, deps.segment, sizes)
                use_case = _intake(request)
                if len(submissions) > use_case.policy.max_events:
                    raise TooManyEventsError(len(submissions), use_case.policy.max_events)
                context = IntakeContext(principal.name, received_at, arrived_ms)
                report = await _accept(deps, use_case, submissions, context, principal)
                deps.metrics.observe_report("segment", report)
                # Segment libraries retry 5xx and 429 only; a 400 tells them to drop the batch.
                code = status.HTTP_400_BAD_REQUEST if report.all_rejected else 200
                content = encode_report(report, success=not report.all_rejected)
                return Response(content, code, media_type=JSON)

            return await _measured(deps, f"segment_{endpoint}", handle)

        router.add_api_route(
            path,
            post_segment,
            methods=["POST"],
            tags=["segment"],
            summary=f"Segment spec: {endpoint}",
            response_model=SegmentResponse,
            openapi_extra=_SEGMENT_DOC,
            responses={
                **_refusals(401, 403, 413, 415, 429, 503),
                400: {"model": SegmentResponse, "description": "Malformed, or all rejected"},
            },
            operation_id=f"segment_{path.rsplit('/', 1)[1]}",
        )

    for endpoint in ("track", "identify", "page", "screen", "group", "alias"):
        segment_route(endpoint, f"/v1/{endpoint}")
    segment_route("batch", "/v1/batch")
    segment_route("batch", "/v1/import")

    return router


def install_error_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Map the refusals of a whole request to status codes."""

    async def refuse(_request: Request, exc: Exception) -> Response:
        answer = refusal(exc, retry_after_s)
        assert answer is not None  # registered for the mapped errors only
        return answer

    for error in _STATUS_OF:
        app.add_exception_handler(error, refuse)
