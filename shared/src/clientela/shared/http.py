"""Common HTTP surface of every service: health, readiness, metrics, errors and the runner."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.convertors import StringConvertor
from starlette.routing import BaseRoute, Match, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clientela.shared import metrics, tracing
from clientela.shared.auth import KeyRing, require_scope
from clientela.shared.settings import AuthSettings

ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
FastHandler = Callable[[Request], Awaitable[Response]]

log = logging.getLogger(__name__)


class ObservedRequests:
    """ASGI middleware: each request runs in its caller's trace (or a new one) and is counted.

    Requests are counted and timed by route template, never by path (paths can hold
    identifier values); with an SDK the request's server span is named the same way.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        with tracing.request_context(scope) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                method, route = scope["method"], getattr(scope.get("route"), "path", None)
                metrics.observe_request(method, route, status_code, time.perf_counter() - started)
                if span is not None:
                    tracing.finish_server_span(span, method, route, status_code)


@dataclass(frozen=True, slots=True)
class FastRoute:
    """One route served by the fast lane: its method, template, pattern and handler."""

    method: str
    path: str
    pattern: re.Pattern[str]
    handle: FastHandler


class FastLane:
    """ASGI middleware that answers a service's hot routes ahead of the middleware stack.

    Each middleware layer (server errors, FastAPI's telemetry and body limit, request
    observation, exception mapping, the router, dependency injection) wraps receive and send
    or resolves the request again, which costs more than a cached lookup itself. The lane
    gives its routes what that stack gives: the caller's trace, the request counted and timed
    by route template, the app's exception handlers, and a plain 500 for anything else.
    """

    def __init__(self, app: ASGIApp, service: FastAPI, routes: list[FastRoute]) -> None:
        self._app = app
        self._service = service
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a fast route, pass everything else on."""
        # Behind a root path the router strips it first; the lane leaves those to the stack.
        if scope["type"] == "http" and not scope.get("root_path"):
            for route in self._routes:
                if scope["method"] != route.method:
                    continue
                found = route.pattern.match(scope["path"])
                if found is not None:
                    scope["path_params"] = found.groupdict()
                    await self._serve(route, scope, receive, send)
                    return
        await self._app(scope, receive, send)

    async def _serve(self, route: FastRoute, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status_code = 500
        response_started = False

        async def send_status(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code, response_started = int(message["status"]), True
            await send(message)

        request = Request(scope, receive, send)
        with tracing.request_context(scope, route.path) as span:
            try:
                try:
                    response = await route.handle(request)
                except Exception as exc:
                    response = await self._handled(request, exc)
                await response(scope, receive, send_status)
            except Exception:
                if not response_started:
                    # What ServerErrorMiddleware answers; the server logs the error.
                    await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                raise
            finally:
                elapsed = time.perf_counter() - started
                metrics.observe_request(route.method, route.path, status_code, elapsed)
                if span is not None:
                    tracing.finish_server_span(span, route.method, route.path, status_code)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        """Answer an error with the app's handler for it (by class, most specific first)."""
        handlers = self._service.exception_handlers
        handler = None
        for cls in type(exc).__mro__:
            # A handler of Exception itself belongs to the server-error layer: a plain 500 here.
            if cls is Exception:
                break
            if cls in handlers:
                handler = handlers[cls]
                break
        if handler is None:
            raise exc
        answer = handler(request, exc)
        response: Response = await answer if inspect.isawaitable(answer) else answer
        return response


def add_fast_route(app: FastAPI, method: str, path: str, handle: FastHandler) -> None:
    """Serve one route of an app built by `create_app` ahead of its middleware (see FastLane).

    The route must also be declared on the app's router, which documents it; the lane
    answers it first, so the handler gives the answer the declared route would.
    """
    pattern, _format, convertors = compile_path(path)
    if not all(isinstance(c, StringConvertor) for c in convertors.values()):
        raise ValueError(f"fast routes take string parameters only: {path}")
    routes: list[FastRoute] = app.state.fast_routes
    routes.append(FastRoute(method, path, pattern, handle))


def _with_fast_lane(app: FastAPI) -> None:
    """Put the app's fast lane around its middleware stack, once its routes are known."""
    routes: list[FastRoute] = []
    app.state.fast_routes = routes
    build_stack = app.build_middleware_stack

    def build_with_lane() -> ASGIApp:
        return FastLane(build_stack(), app, routes)

    app.build_middleware_stack = build_with_lane  # type: ignore[method-assign]


class DefaultRoute(APIRoute):
    """A route that steps aside when the app has another route for the same path and method.

    The shared /metrics is one: a service that serves its own /metrics keeps it.
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match like any route, unless another route of the app answers the same request."""
        match, child = super().matches(scope)
        if match is Match.FULL and any(
            _answers(route, self.path, scope) for route in _routes(scope) if route is not self
        ):
            return Match.NONE, {}
        return match, child


def _routes(scope: Scope) -> list[BaseRoute]:
    app = scope.get("app")
    router = getattr(app, "router", None)
    return list(getattr(router, "routes", []))


def _answers(route: BaseRoute, path: str, scope: Scope) -> bool:
    if getattr(route, "path", None) != path:
        return False
    methods = getattr(route, "methods", None)
    return methods is None or scope.get("method") in methods


def create_app(
    *,
    title: str,
    description: str,
    lifespan: Lifespan,
    readiness: Callable[[FastAPI], Mapping[str, ReadinessCheck]],
    auth: AuthSettings | None = None,
) -> FastAPI:
    """Build a FastAPI app with /healthz, /readyz, /metrics and storage errors mapped to 503.

    Every request is counted and timed (by route template) and runs in its caller's trace
    context. /metrics is open like /healthz unless `auth.metrics_scope` names a scope.
    """
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own spans record the request path, which can hold identifier values
        # (/v1/profiles/by/email/...); ObservedRequests names spans by route template.
        telemetry={"tracing": False, "logs": False},
    )
    app.add_middleware(ObservedRequests)
    _with_fast_lane(app)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Dependencies are reachable",
        responses={503: {"description": "A dependency is unreachable"}},
    )
    async def readyz() -> JSONResponse:
        checks = readiness(app)
        results = dict(
            zip(checks, await asyncio.gather(*(c() for c in checks.values())), strict=True)
        )
        # No checks at all means the service has not finished starting.
        ready = bool(results) and all(results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    async def prometheus_metrics(request: Request) -> Response:
        return Response(
            metrics.render(metrics.registries(request.app)), media_type=metrics.CONTENT_TYPE
        )

    scope = auth.metrics_scope if auth is not None else None
    app.router.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        tags=["health"],
        summary="Prometheus metrics" + (f" (scope {scope})" if scope else ""),
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Exposition format"}},
        dependencies=[Depends(require_scope(KeyRing.from_settings(auth), scope))]
        if auth is not None and scope is not None
        else None,
        operation_id="prometheus_metrics",
        route_class_override=DefaultRoute,
    )

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeoutError)
    async def _storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return storage_unavailable(exc)

    @app.exception_handler(OSError)
    async def _network_error(_request: Request, exc: Exception) -> JSONResponse:
        # The driver raises a refused or reset connection, or a timeout (a subclass of
        # OSError), as such, unwrapped by SQLAlchemy; other OSErrors stay server errors.
        if not raised_by_storage(exc):
            raise exc
        return storage_unavailable(exc)

    return app


_STORAGE_MODULES = ("sqlalchemy.", "asyncpg.", "aiosqlite.")


def raised_by_storage(exc: BaseException) -> bool:
    """Return whether an exception was raised inside the database client (SQLAlchemy, driver)."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_STORAGE_MODULES):
            return True
        tb = tb.tb_next
    return False


def storage_unavailable(exc: BaseException) -> JSONResponse:
    """Answer 503 with Retry-After for a database outage, logging one line without a trace."""
    # A database outage is temporary; clients should retry rather than see a 500.
    log.warning("storage unavailable: %s", type(exc).__name__)
    return JSONResponse(
        {"detail": "storage temporarily unavailable"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def configure_logging(level: str) -> None:
    """Log to stderr in one line per record; personal data is never logged by design."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    """Run the app under uvicorn until SIGINT/SIGTERM (recording spans if OTLP is set up)."""
    configure_logging(log_level)
    # "Clientela profile" -> "clientela-profile", the service.name unless OTEL_SERVICE_NAME.
    tracing.configure(app.title.lower().replace(" ", "-"))
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run()


async def drain(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait for it to finish."""
    if task is None:
        return
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def noop_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """A lifespan that does nothing (for tests that build bare apps)."""
    yield
