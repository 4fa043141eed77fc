"""What the deployments ask of the services' command lines and HTTP apps.

`serve`, the health endpoints and `/metrics` (scraped by Prometheus; the shared app serves it)
exist for every service. `migrate` (run by the migration jobs) comes with each service's
migrations (clientela.shared.migrations): until a service with a database provides it, its
test is an expected failure, and it passes on its own once they land.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/pyproject.toml"))


def commands(service: Any) -> set[str]:
    """Return the commands the service's console script accepts (from its --help)."""
    (target,) = service.scripts.values()
    module, _, function = target.partition(":")
    main = getattr(importlib.import_module(module), function)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    choices = re.search(r"\{([a-z,-]+)\}", output.getvalue())
    return set(choices.group(1).split(",")) if choices else set()


@pytest.mark.parametrize("name", SERVICES)
def test_cli_offers_serve(name: str, services: dict[str, Any]) -> None:
    assert "serve" in commands(services[name])


@pytest.mark.parametrize("name", SERVICES)
def test_cli_offers_migrate(name: str, services: dict[str, Any]) -> None:
    service = services[name]
    if not service.needs_database:
        pytest.skip(f"{name} owns no database schema")
    if importlib.util.find_spec(f"clientela.{name}.migrations") is None:
        pytest.xfail(f"clientela-{name} has no migrations and no `migrate` command yet")
    assert "migrate" in commands(service)


@pytest.mark.parametrize("name", SERVICES)
def test_app_serves_health_endpoints(name: str, services: dict[str, Any]) -> None:
    assert services[name].serves("/healthz")
    assert services[name].serves("/readyz")


@pytest.mark.parametrize("name", SERVICES)
def test_app_serves_metrics(name: str, services: dict[str, Any]) -> None:
    assert services[name].serves("/metrics")
