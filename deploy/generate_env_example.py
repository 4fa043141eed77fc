"""Write .env.example: every setting of every service, and what docker-compose.yml needs.

    uv run python deploy/generate_env_example.py          # rewrite .env.example
    uv run python deploy/generate_env_example.py --check  # exit 1 when it is stale

The settings come from the services' pydantic settings classes (their own prefix, and the
shared components under CLIENTELA_*), with each default and description; the compose
variables come from the `${NAME...}` references in docker-compose.yml. Regenerate after a
setting is added: a test fails while the file is stale.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import textwrap
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings

from clientela.shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE_FILE = ROOT / "docker-compose.yml"

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`; `$${` is a literal `$`.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

# What docker-compose.yml's own variables mean (the services' settings describe themselves).
COMPOSE_VARIABLES: dict[str, str] = {
    "POSTGRES_PASSWORD": (
        "Password of the PostgreSQL role `clientela` (URL-safe characters, it goes into a URL):"
        " e.g. `openssl rand -hex 24`."
    ),
    "REDIS_PASSWORD": "Password Redis requires (URL-safe characters): e.g. `openssl rand -hex 24`.",
    "CLIENTELA_API_KEYS": (
        'Hashed API keys, one JSON line: [{"name": "crm", "sha256": "<64 hex>", "scopes":'
        ' ["write"]}]; how to make them: docs/deployment.md.'
    ),
    "CLIENTELA_ERASURE_KEY": (
        "Secret that scoring and campaign key the hash of an erased profile id with (a marker"
        " that stops late events resurrecting the person): e.g. `openssl rand -hex 32`."
    ),
    "PUBLISH_ADDRESS": (
        "Host address the four HTTP ports (8081-8084) are published on; 0.0.0.0 for every"
        " interface (put TLS in front)."
    ),
    "IMAGE_TAG": "Tag of the images docker compose builds or pulls (clientela/<service>).",
}


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable a settings class reads."""

    name: str
    default: str
    description: str


def settings_class(service: str) -> type[ServiceSettings]:
    """Return the settings class declared in `clientela.<service>.config`."""
    module = importlib.import_module(f"clientela.{service}.config")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value.__module__ == module.__name__
    ]
    if len(found) != 1:
        raise SystemExit(f"expected one settings class in {module.__name__}, found {found}")
    return found[0]


def services() -> list[str]:
    """Return the services of the workspace, in the README's order when known."""
    order = ["ingest", "profile", "scoring", "campaign"]
    found = {p.parent.name for p in ROOT.glob("services/*/pyproject.toml")}
    return [s for s in order if s in found] + sorted(found - set(order))


def _nested_settings(field: FieldInfo) -> type[BaseSettings] | None:
    for candidate in (field.annotation, *typing.get_args(field.annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseSettings):
            return candidate
    return None


def _env_names(prefix: str, name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        return [alias.upper()]
    if alias is not None and hasattr(alias, "choices"):
        return [c.upper() for c in alias.choices if isinstance(c, str)]
    return [f"{prefix}{name}".upper()]


def _sorted_sets(value: Any) -> Any:
    # Sets have no stable order across runs; the file must not change from run to run.
    if isinstance(value, dict):
        return {k: _sorted_sets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sorted_sets(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [_sorted_sets(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(to_jsonable_python(v), sort_keys=True))
    return value


def render_default(field: FieldInfo) -> str:
    """Return a field's default as an env file value ('' when none or secret)."""
    if field.is_required():
        return ""
    value = field.get_default(call_default_factory=True)
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str | int | float | Decimal | Path):
        return str(value)
    plain = to_jsonable_python(_sorted_sets(value))
    if isinstance(plain, str):
        return plain  # times, durations: read as text, not as JSON
    # Lists, maps and models are read as JSON; single quotes keep the double quotes intact.
    return "'" + json.dumps(plain) + "'"


def settings_of(cls: type[BaseSettings]) -> Iterator[tuple[str, Setting]]:
    """Yield (env prefix, setting) for every env var the class reads, nested ones included."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    for name, field in cls.model_fields.items():
        nested = _nested_settings(field)
        if nested is not None:
            yield from settings_of(nested)
            continue
        description = " ".join((field.description or "").split())
        for env in _env_names(prefix, name, field):
            yield prefix, Setting(env, render_default(field), description)


def compose_variables(text: str) -> dict[str, tuple[str, str]]:
    """Return {name: (operator, default)} of every variable docker-compose.yml interpolates."""
    found: dict[str, tuple[str, str]] = {}
    for match in INTERPOLATION.finditer(text):
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        if name not in found or operator.endswith("?"):
            found[name] = (operator, argument)
    return found


def compose_fixed_env(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Return {service: {name: value}} of what compose sets for each Clientela service."""
    fixed: dict[str, dict[str, str]] = {}
    for svc in services():
        env = compose["services"].get(svc, {}).get("environment", {})
        fixed[svc] = {str(k): str(v) for k, v in env.items()}
    return fixed


def _display(value: str) -> str:
    return INTERPOLATION.sub(lambda m: "${" + m.group(1) + "}", value)


def _block(setting: Setting, commented: bool = True) -> list[str]:
    lines = textwrap.wrap(
        setting.description, width=98, initial_indent="# ", subsequent_indent="# "
    )
    lines.append(f"{'# ' if commented else ''}{setting.name}={setting.default}")
    return lines


def _describe(name: str, described: dict[str, Setting]) -> str:
    """Return what the compose file or the settings class says a variable is for."""
    found = described.get(name)
    return COMPOSE_VARIABLES.get(name) or (found.description if found else "")


def render() -> str:
    """Return the content of .env.example."""
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")
    compose = yaml.safe_load(compose_text)
    variables = compose_variables(compose_text)
    fixed = compose_fixed_env(compose)

    shared: dict[str, Setting] = {}
    own: dict[str, dict[str, Setting]] = {}
    for svc in services():
        cls = settings_class(svc)
        service_prefix = str(cls.model_config.get("env_prefix", ""))
        own[svc] = {}
        for prefix, setting in settings_of(cls):
            if prefix == service_prefix:
                own[svc].setdefault(setting.name, setting)
            else:
                shared.setdefault(setting.name, setting)
    described = {s.name: s for s in shared.values()}

    out = [
        "# Clientela: settings for docker compose. Copy this file to .env, fill in the REQUIRED",
        "# values, then `docker compose up -d --build` (docs/deployment.md).",
        "#",
        "# Generated by `uv run python deploy/generate_env_example.py` from the services'",
        "# settings classes and docker-compose.yml: edit your .env, not this file. Every service",
        "# reads .env; each setting below shows its default, commented out.",
        "",
        "### REQUIRED: docker compose refuses to start while one of these is empty.",
    ]
    required = sorted(n for n, (op, _) in variables.items() if op.endswith("?"))
    optional = sorted(n for n, (op, _) in variables.items() if not op.endswith("?"))
    for name in required:
        out += _block(Setting(name, "", _describe(name, described)), commented=False)
    out += ["", "### Optional docker compose settings."]
    for name in optional:
        out += _block(Setting(name, variables[name][1], _describe(name, described)))

    in_compose_sections = set(variables)
    out += [
        "",
        "### Set by docker-compose.yml to wire each service to the stack's Kafka, PostgreSQL and",
        "### Redis; listed for reference: a value here does not override them.",
    ]
    wired: dict[str, dict[str, list[str]]] = {}
    for svc, env in fixed.items():
        for name, value in env.items():
            if name not in in_compose_sections:
                wired.setdefault(name, {}).setdefault(_display(value), []).append(svc)
    for name, values in wired.items():
        for value, where in values.items():
            out.append(f"# {name}={value}    ({', '.join(where)})")
    compose_set = {name for env in fixed.values() for name in env} | in_compose_sections

    out += ["", "### Shared settings (every service reads them)."]
    for setting in shared.values():
        if setting.name not in compose_set:
            out += _block(setting)
    for svc in services():
        out += ["", f"### {svc} ({settings_class(svc).model_config.get('env_prefix', '')}*)"]
        for setting in own[svc].values():
            if setting.name not in compose_set:
                out += _block(setting)
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write .env.example, or with --check fail when it is stale."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when .env.example is stale")
    args = parser.parse_args(argv)
    text = render()
    current = ENV_EXAMPLE.read_text(encoding="utf-8") if ENV_EXAMPLE.exists() else None
    if args.check:
        if current != text:
            print("stale: .env.example", file=sys.stderr)
            return 1
        return 0
    if current != text:
        ENV_EXAMPLE.write_text(text, encoding="utf-8")
        print("wrote .env.example")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
