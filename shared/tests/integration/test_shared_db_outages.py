"""A database that refuses, drops or stops answering gives a prompt 503, never a 500 or a hang.

Real asyncpg against real sockets: nothing listening (refused), a server that accepts and
never answers (frozen at connect), and a proxy to PostgreSQL that stops forwarding (frozen
with connections in the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from clientela.shared.db import create_engine
from clientela.shared.embedded_broker import free_port
from clientela.shared.http import create_app, noop_lifespan
from clientela.shared.settings import DatabaseSettings

CONNECT_TIMEOUT_S = 1.0


def _settings(url: str) -> DatabaseSettings:
    return DatabaseSettings(
        url=url,
        schema_name="public",
        pool_size=2,
        connect_timeout_s=CONNECT_TIMEOUT_S,
        command_timeout_s=3.0,
        pool_timeout_s=1.0,
    )


def _app(engine: AsyncEngine) -> FastAPI:
    app = create_app(
        title="Outage test", description="", lifespan=noop_lifespan, readiness=lambda _app: {}
    )

    @app.get("/read")
    async def read() -> dict[str, int]:
        async with engine.connect() as conn:
            return {"one": int((await conn.execute(text("SELECT 1"))).scalar_one())}

    @app.get("/file")
    async def file() -> dict[str, str]:
        raise FileNotFoundError("/nowhere")  # an OSError that has nothing to do with storage

    return app


@contextlib.asynccontextmanager
async def _client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(engine), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await engine.dispose()


async def _timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(path)
    return response, time.monotonic() - started


def _url_via(postgres_url: str, port: int) -> str:
    return make_url(postgres_url).set(host="127.0.0.1", port=port).render_as_string(False)


async def test_a_refused_connection_answers_503_with_retry_after_and_no_trace(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(_settings(_url_via(postgres_url, free_port())), "outage")
    caplog.set_level(logging.WARNING)
    async with _client(engine) as client:
        response, took = await _timed_get(client, "/read")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert took < 2
    lines = [r for r in caplog.records if "storage unavailable" in r.getMessage()]
    assert [r.getMessage() for r in lines] == ["storage unavailable: ConnectionRefusedError"]
    assert all(r.exc_info is None for r in caplog.records)


async def test_a_server_that_never_answers_gives_503_within_the_connect_timeout(
    postgres_url: str,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        engine = create_engine(_settings(_url_via(postgres_url, port)), "outage")
        async with _client(engine) as client:
            response, took = await _timed_get(client, "/read")
    finally:
        server.close()
    assert response.status_code == 503
    assert took < CONNECT_TIMEOUT_S + 2


@dataclass
class PausableProxy:
    """Forwards to PostgreSQL until paused; paused, it holds every byte (a frozen host)."""

    target: tuple[str, int]
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    async def start(self) -> int:
        self.flowing.set()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.flowing.wait()
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_frozen_database_with_pooled_connections_gives_a_prompt_503(
    postgres_url: str,
) -> None:
    pg = make_url(postgres_url)
    proxy = PausableProxy((pg.host or "127.0.0.1", pg.port or 5432))
    port = await proxy.start()
    try:
        engine = create_engine(_settings(_url_via(postgres_url, port)), "outage")
        async with _client(engine) as client:
            assert (await client.get("/read")).status_code == 200  # a connection is pooled
            proxy.flowing.clear()
            frozen, took = await _timed_get(client, "/read")
            proxy.flowing.set()
            again = await client.get("/read")
    finally:
        proxy.close()
    assert frozen.status_code == 503
    # The ping of the pooled connection is bounded by the connect timeout (plus the time
    # asyncpg takes to give the connection up), not by the statement timeout.
    assert took < CONNECT_TIMEOUT_S + 2.5
    assert again.status_code == 200


async def test_an_oserror_that_is_not_the_database_stays_a_server_error(
    postgres_url: str,
) -> None:
    engine = create_engine(_settings(postgres_url), "outage")
    async with _client(engine) as client:
        response = await client.get("/file")
    assert response.status_code == 500


async def test_sqlite_is_unaffected_by_the_postgresql_timeouts() -> None:
    settings = DatabaseSettings(
        url="sqlite+aiosqlite:///:memory:",
        connect_timeout_s=0.001,
        command_timeout_s=0.001,
        pool_timeout_s=0.001,
    )
    engine = create_engine(settings, "outage")
    async with _client(engine) as client:
        response = await client.get("/read")
    assert response.status_code == 200
    assert response.json() == {"one": 1}


async def test_a_failed_statement_names_no_parameter(database_settings: DatabaseSettings) -> None:
    # Parameters are people's identifiers: a logged error shows the statement, not them.
    engine = create_engine(database_settings, "sharedtest")
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as caught:
                await conn.execute(
                    text("SELECT * FROM no_such_table WHERE x = :v"), {"v": "ada@example.com"}
                )
    finally:
        await engine.dispose()
    assert "no_such_table" in str(caught.value)
    assert "ada@example.com" not in str(caught.value)
