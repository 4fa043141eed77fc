"""What the services' benchmarks share: the CPU of the database backends they kept busy."""

from __future__ import annotations

from typing import Any

import psutil
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class BackendCpu:
    """CPU time of the PostgreSQL backends that serve an engine's connections (psutil)."""

    def __init__(self) -> None:
        self.pids: set[int] = set()

    def watch(self, engine: AsyncEngine) -> None:
        """Record the backend pid of every connection the engine opens from now on."""
        event.listen(engine.sync_engine, "connect", self._connected)

    def _connected(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        self.pids.add(int(cursor.fetchone()[0]))
        cursor.close()

    def seconds(self) -> float:
        """Return the CPU seconds (user + system) the backends have used so far."""
        total = 0.0
        for pid in self.pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total
