"""Start and stop the four services as real processes against a given broker and stores."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

SERVICES: tuple[str, ...] = ("ingest", "profile", "scoring", "campaign")
CONSOLE = "console"
DEFAULT_PORTS: dict[str, int] = {
    "ingest": 8081,
    "profile": 8082,
    "scoring": 8083,
    "campaign": 8084,
    CONSOLE: 8085,
}


@dataclass
class PlatformSettings:
    """Where the services find the broker and their stores, and where they listen."""

    bootstrap_servers: str
    data_dir: Path
    topic_prefix: str = ""
    database_url: str | None = None
    schema_prefix: str = ""
    cache_url: str = "memory://"
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    console: bool = False

    def processes(self) -> tuple[str, ...]:
        """Return what runs: the four services, and the web console when asked for."""
        return (*SERVICES, CONSOLE) if self.console else SERVICES

    def env_for(self, service: str) -> dict[str, str]:
        """Return the environment a service process runs with."""
        prefix = service.upper()
        env = {
            **os.environ,
            "CLIENTELA_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CLIENTELA_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "CLIENTELA_DATABASE_DATA_DIR": str(self.data_dir),
            "CLIENTELA_DATABASE_SCHEMA_PREFIX": self.schema_prefix,
            "CLIENTELA_CACHE_URL": self.cache_url,
            f"{prefix}_HTTP_HOST": self.host,
            f"{prefix}_HTTP_PORT": str(self.ports[service]),
            f"{prefix}_LOG_LEVEL": self.log_level,
            **self.extra_env,
        }
        if service == CONSOLE:
            for upstream in ("profile", "scoring", "campaign"):
                env[f"CONSOLE_{upstream.upper()}_URL"] = self.url(upstream)
        if self.database_url:
            env["CLIENTELA_DATABASE_URL"] = self.database_url
        else:
            env.pop("CLIENTELA_DATABASE_URL", None)
        return env

    def url(self, service: str) -> str:
        """Return the base URL of a service's HTTP API."""
        return f"http://{self.host}:{self.ports[service]}"


class PlatformError(RuntimeError):
    """A service failed to migrate, to start or to become ready."""


def has_migrations(service: str) -> bool:
    """Return whether a service ships database migrations (`clientela.<svc>.migrations`)."""
    return importlib.util.find_spec(f"clientela.{service}.migrations") is not None


class Platform:
    """The four services (and the console when configured) as child processes."""

    def __init__(self, settings: PlatformSettings, log_dir: Path) -> None:
        self.settings = settings
        self._log_dir = log_dir
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    def start(self, timeout_s: float = 120.0) -> Self:
        """Migrate the services' schemas, start every service, wait until each is ready."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.migrate(timeout_s)
        for service in self.settings.processes():
            self.start_service(service)
        self.wait_ready(timeout_s)
        return self

    def migrate(self, timeout_s: float = 120.0) -> None:
        """Run `migrate` of every service that has migrations, as a deployment does first.

        On PostgreSQL `serve` refuses a schema that is not migrated; on SQLite it migrates
        by itself, and this is a quick no-op.
        """
        running = {
            service: subprocess.Popen(
                [sys.executable, "-m", f"clientela.{service}", "migrate"],
                env=self.settings.env_for(service),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for service in SERVICES
            if has_migrations(service)
        }
        for service, process in running.items():
            try:
                output, _ = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
            if process.returncode != 0:
                tail = "\n".join(output.decode(errors="replace").splitlines()[-40:])
                raise PlatformError(f"{service} migrate exited with {process.returncode}:\n{tail}")

    def start_service(self, service: str) -> None:
        """Start one service process (used again after a crash or a deliberate kill)."""
        log = self._logs.get(service)
        if log is None:
            log = self._logs[service] = (self._log_dir / f"{service}.log").open("ab")
        self._processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"clientela.{service}", "serve"],
            env=self.settings.env_for(service),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Wait until every service answers /readyz with 200, or raise with its log tail."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.settings.processes())
        with httpx.Client(timeout=2.0) as client:
            while pending:
                service = pending[0]
                process = self._processes[service]
                if process.poll() is not None:
                    raise PlatformError(
                        f"{service} exited with {process.returncode}:\n{self.log_tail(service)}"
                    )
                try:
                    ready = client.get(self.settings.url(service) + "/readyz").status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    pending.pop(0)
                    continue
                if time.monotonic() > deadline:
                    raise PlatformError(
                        f"{service} not ready after {timeout_s}s:\n{self.log_tail(service)}"
                    )
                time.sleep(0.2)

    def pids(self) -> dict[str, int]:
        """Return the process id of each running service."""
        return {name: p.pid for name, p in self._processes.items() if p.poll() is None}

    def log_tail(self, service: str, lines: int = 40) -> str:
        """Return the last lines a service logged."""
        path = self._log_dir / f"{service}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop every service: SIGTERM, then SIGKILL after a grace period."""
        for process in self._processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self._processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._processes.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
