"""HTTP access to the services for the command line, with errors mapped to exit codes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

from clientela.platform.launcher import DEFAULT_PORTS
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DENIED = 4
EXIT_UNAVAILABLE = 5

_DEFAULT_KEYS = {"write": DEV_WRITE_KEY, "read": DEV_READ_KEY, "admin": DEV_ADMIN_KEY}


class CliError(Exception):
    """A failure to report to the user with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def service_url(service: str) -> str:
    """Return a service's base URL: CLIENTELA_<SERVICE>_URL or the local default port."""
    return os.environ.get(
        f"CLIENTELA_{service.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[service]}"
    ).rstrip("/")


def api_key(scope: str) -> str:
    """Return the key for a scope: CLIENTELA_<SCOPE>_KEY, else the development key."""
    return os.environ.get(f"CLIENTELA_{scope.upper()}_KEY") or os.environ.get(
        f"CLIENTELA_DEV_{scope.upper()}_KEY", _DEFAULT_KEYS[scope]
    )


@dataclass
class Api:
    """A small synchronous client of one service."""

    service: str
    scope: str = "read"
    timeout_s: float = 30.0

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return the decoded JSON body or raise CliError with a clear message."""
        url = service_url(self.service) + path
        headers = {"Authorization": f"Bearer {api_key(self.scope)}"}
        try:
            response = httpx.request(method, url, headers=headers, timeout=self.timeout_s, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(
                f"{self.service} is unreachable at {url}: {exc}", EXIT_UNAVAILABLE
            ) from exc
        if response.status_code == 404:
            raise CliError(f"not found: {path}", EXIT_NOT_FOUND)
        if response.status_code in (401, 403):
            raise CliError(
                f"{self.service} refused the {self.scope} key "
                f"({response.status_code}); set CLIENTELA_{self.scope.upper()}_KEY",
                EXIT_DENIED,
            )
        if response.status_code == 503:
            raise CliError(f"{self.service} is temporarily unavailable", EXIT_UNAVAILABLE)
        if response.status_code >= 400:
            raise CliError(f"{self.service} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None
