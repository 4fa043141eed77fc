"""What the benchmarks share: the host's speed, and the CPU of the database backends they used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
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


def host_speed_tool() -> Path | None:
    """Return the host-speed reference tool beside the checkout (or CLIENTELA_HOST_SPEED)."""
    named = os.environ.get("CLIENTELA_HOST_SPEED")
    if named:
        return Path(named)
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        tool = base.parent / "shared" / "tools" / "host-speed"
        if tool.is_file():
            return tool
    return None


def host_speed_ops_per_s(seconds: float = 3.0) -> float | None:
    """Return the host's single-core reference figure, or None where the tool is absent.

    Machine speed drifts from day to day; a benchmark records this figure beside its own so
    runs on different days compare (ops/s of a fixed encode-hash-decode workload).
    """
    tool = host_speed_tool()
    if tool is None:
        return None
    try:
        done = subprocess.run(
            [sys.executable, str(tool), str(seconds)],
            capture_output=True,
            check=True,
            text=True,
            timeout=seconds * 10 + 30,
        )
        return float(json.loads(done.stdout)["host_speed_ops_per_s"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return None
