"""Every HTTP endpoint of every service refuses requests without a key, with an unknown key,
and with a key that lacks the scope it needs (walked from each running service's OpenAPI)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from clientela_reliability_harness import Rig

from clientela.platform.launcher import SERVICES
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY

pytestmark = pytest.mark.e2e

# Open by design: liveness, readiness and the Prometheus scrape (README, CLIENTELA_METRICS_SCOPE).
PUBLIC = {"/healthz", "/readyz", "/metrics"}


def _operations(rig: Rig) -> list[tuple[str, str, str]]:
    """Return (service, method, path) of every documented operation of the running services."""
    found: list[tuple[str, str, str]] = []
    with httpx.Client(timeout=10) as client:
        for service in SERVICES:
            spec: dict[str, Any] = client.get(rig.url(service) + "/openapi.json").json()
            for path, operations in spec["paths"].items():
                found.extend(
                    (service, method.upper(), path)
                    for method in operations
                    if method in ("get", "post", "put", "patch", "delete")
                )
    return found


def _call(
    rig: Rig, service: str, method: str, path: str, headers: dict[str, str]
) -> httpx.Response:
    url = rig.url(service) + re.sub(r"\{[^}]+\}", "nobody", path)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    with httpx.Client(timeout=10) as client:
        return client.request(method, url, json=body, headers=headers)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def operations(rig: Rig) -> list[tuple[str, str, str]]:
    """The protected operations of the running platform."""
    rig.ensure_up()
    found = [op for op in _operations(rig) if op[2] not in PUBLIC]
    assert len(found) >= 25, found
    return found


def test_security_every_endpoint_refuses_a_missing_or_unknown_key(
    up: Rig, operations: list[tuple[str, str, str]]
) -> None:
    wrong: list[str] = []
    for service, method, path in operations:
        for label, headers in (
            ("no key", {}),
            ("unknown bearer", _bearer("not-a-key")),
            ("unknown X-API-Key", {"X-API-Key": "not-a-key"}),
            ("basic with unknown user", {"Authorization": "Basic bm90LWEta2V5Og=="}),
        ):
            status = _call(up, service, method, path, headers).status_code
            if status != 401:
                wrong.append(f"{service} {method} {path} with {label}: {status}")
    assert not wrong, "\n".join(wrong)


def test_security_every_endpoint_refuses_a_key_without_its_scope(
    up: Rig, operations: list[tuple[str, str, str]]
) -> None:
    """Write keys only write touchpoints; read keys only read; changes need the admin scope."""
    wrong: list[str] = []
    for service, method, path in operations:
        if service == "ingest":
            refused = {"read": DEV_READ_KEY}
        else:
            refused = {"write": DEV_WRITE_KEY}
            if method != "GET":
                refused["read"] = DEV_READ_KEY
        for scope, key in refused.items():
            status = _call(up, service, method, path, _bearer(key)).status_code
            if status != 403:
                wrong.append(f"{service} {method} {path} with a {scope} key: {status}")
    assert not wrong, "\n".join(wrong)


def test_security_the_right_key_gets_past_authentication(
    up: Rig, operations: list[tuple[str, str, str]]
) -> None:
    """Sanity check of the two tests above: with the right scope nothing answers 401/403."""
    wrong: list[str] = []
    for service, method, path in operations:
        if method != "GET":
            continue  # do not change anything; the scope checks above cover the writes
        key = DEV_WRITE_KEY if service == "ingest" else DEV_ADMIN_KEY
        status = _call(up, service, method, path, _bearer(key)).status_code
        if status in (401, 403):
            wrong.append(f"{service} {method} {path}: {status}")
    assert not wrong, "\n".join(wrong)
