"""Common HTTP surface of every service: health, readiness, error mapping and the runner."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

log = logging.getLogger(__name__)


def create_app(
    *,
    title: str,
    description: str,
    lifespan: Lifespan,
    readiness: Callable[[FastAPI], Mapping[str, ReadinessCheck]],
) -> FastAPI:
    """Build a FastAPI app with /healthz, /readyz and storage errors mapped to 503."""
    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)

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

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def _storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # A database outage is temporary; clients should retry rather than see a 500.
        log.warning("storage unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": "storage temporarily unavailable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    return app


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
    """Run the app under uvicorn until SIGINT/SIGTERM."""
    configure_logging(log_level)
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
