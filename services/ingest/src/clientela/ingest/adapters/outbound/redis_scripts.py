"""Lua script calls on Redis for the dedup claim and confirm: a lean client, or redis-py.

Each request makes two script calls. Through redis-py each costs the process ~5 times the
round trip itself (connection pool, retry and health-check layers, the generic reply
parser); the lean client writes one RESP command on a connection of its own pool and reads
one reply, which is all these calls need. It serves plain `redis://` URLs (host, port, db,
user, password); any other URL (TLS, Unix socket, options) goes through redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio as redis_asyncio
from redis.asyncio.connection import parse_url

Reply = bytes | int | None
_LEAN_PARTS = frozenset({"host", "port", "db", "username", "password"})


class ScriptCallError(Exception):
    """Redis could not be reached, or refused the call."""


class Script:
    """A Lua script and its SHA-1, by which Redis caches it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class ScriptRunner(Protocol):
    """Runs cached Lua scripts."""

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | float]) -> Reply:
        """Run the script; raise ScriptCallError when Redis cannot be reached or refuses."""
        ...

    async def close(self) -> None:
        """Close the connections."""
        ...


def script_runner(url: str) -> ScriptRunner:
    """Return the lean runner for a plain redis:// URL, else one on redis-py."""
    parts = parse_url(url)
    if url.startswith("redis://") and set(parts) <= _LEAN_PARTS:
        return LeanScripts(dict(parts))
    return RedisPyScripts(url)


def _command(*parts: str | float) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else repr(part).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


class _ReplyError(Exception):
    """An error reply of Redis."""


async def _reply(reader: asyncio.StreamReader) -> Reply:
    line = await reader.readline()
    kind, rest = line[:1], line[1:-2]
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else (await reader.readexactly(size + 2))[:-2]
    if kind == b":":
        return int(rest)
    if kind == b"+":
        return rest
    if kind == b"-":
        raise _ReplyError(rest.decode(errors="replace"))
    raise ConnectionError("connection closed" if not line else "unexpected reply from Redis")


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanScripts:
    """EVALSHA over plain RESP: one command and one reply per call, a connection per caller."""

    def __init__(self, parts: dict[str, Any]) -> None:
        self._host = str(parts.get("host", "localhost"))
        self._port = int(parts.get("port", 6379))
        self._hello: list[bytes] = []
        if parts.get("password"):
            user = [parts["username"]] if parts.get("username") else []
            self._hello.append(_command("AUTH", *user, parts["password"]))
        if parts.get("db"):
            self._hello.append(_command("SELECT", str(parts["db"])))
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            for command in self._hello:
                writer.write(command)
                await _reply(reader)
        except BaseException:
            writer.close()
            raise
        return reader, writer

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | float]) -> Reply:
        """Run the script (loading it once per Redis restart); ScriptCallError on failure.

        A pooled connection the server has dropped (a restart, an idle timeout) fails the
        first write or read: the call is then made once more on a new connection, as
        redis-py retries a connection error.
        """
        call = _command("EVALSHA", script.sha, str(len(keys)), *keys, *args)
        while True:
            pooled = bool(self._idle)
            try:
                connection = self._idle.pop() if pooled else await self._connect()
            except (OSError, EOFError, _ReplyError) as exc:
                raise ScriptCallError(repr(exc)) from exc
            try:
                answer = await self._call(connection, script, call)
            except (OSError, EOFError) as exc:
                if pooled:
                    continue
                raise ScriptCallError(repr(exc)) from exc
            except _ReplyError as exc:
                raise ScriptCallError(repr(exc)) from exc
            self._idle.append(connection)
            return answer

    @staticmethod
    async def _call(connection: _Connection, script: Script, call: bytes) -> Reply:
        reader, writer = connection
        try:
            writer.write(call)
            try:
                return await _reply(reader)
            except _ReplyError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            writer.write(_command("SCRIPT", "LOAD", script.source))
            await _reply(reader)
            writer.write(call)
            return await _reply(reader)
        except BaseException:
            # Whatever broke (or cancelled) the call, the connection may hold an unread reply.
            writer.close()
            raise

    async def close(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
        for _, writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class RedisPyScripts:
    """The same calls through redis-py, for URLs the lean client does not read."""

    def __init__(self, url: str) -> None:
        self._client: redis_asyncio.Redis = redis_asyncio.Redis.from_url(url)
        self._scripts: dict[str, Any] = {}

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[str | float]) -> Reply:
        """Run the script; ScriptCallError on failure."""
        registered = self._scripts.get(script.sha)
        if registered is None:
            registered = self._scripts[script.sha] = self._client.register_script(script.source)
        try:
            answer: Reply = await registered(keys=list(keys), args=list(args))
        except (redis_asyncio.RedisError, OSError) as exc:
            raise ScriptCallError(repr(exc)) from exc
        return answer

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
