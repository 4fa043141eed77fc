"""docker-compose.yml and .env.example: what compose sets is what the services read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "yaml", reason="PyYAML is not installed: add pyyaml to the dev dependency group"
)
ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEYS?|CREDENTIALS?)", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"://[^/\s:@]*:([^/\s@]+)@")
PINNED = re.compile(r"[^:@\s]+:\d+\.\d+(\.\d+)?[\w.-]*(@sha256:[0-9a-f]{64})?")
ENV_LINE = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


def environment(definition: dict[str, Any]) -> dict[str, str]:
    """Return a compose service's `environment` as a map of strings."""
    env = definition.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def depends_on(definition: dict[str, Any]) -> dict[str, str]:
    """Return {service: condition} of a compose service's dependencies."""
    deps = definition.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_env_vars_are_ones_the_service_reads(compose: Any, services: dict[str, Any]) -> None:
    for service, name, definition in compose.clientela_containers():
        unknown = set(environment(definition)) - services[service].env_vars
        assert not unknown, f"{name} sets variables {service} never reads: {sorted(unknown)}"


def test_services_get_their_production_settings(compose: Any, services: dict[str, Any]) -> None:
    for service, name, definition in compose.clientela_containers():
        svc = services[service]
        env = {k: compose.interpolated(v) for k, v in environment(definition).items()}
        assert env["CLIENTELA_ENVIRONMENT"] == "production", name
        assert env["CLIENTELA_API_KEYS"] == "<CLIENTELA_API_KEYS>", name
        assert env["CLIENTELA_KAFKA_ENABLE_IDEMPOTENCE"] == "true", name
        assert env["CLIENTELA_KAFKA_CREATE_TOPICS"] == "false", name
        assert env["CLIENTELA_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        if svc.needs_database:
            assert env["CLIENTELA_DATABASE_URL"].startswith("postgresql+asyncpg://"), name
            assert "@postgres:5432/" in env["CLIENTELA_DATABASE_URL"], name
        if svc.needs_cache and definition.get("command") != ["migrate"]:
            assert env["CLIENTELA_CACHE_URL"].startswith("redis://"), name
            assert "@redis:6379/" in env["CLIENTELA_CACHE_URL"], name
        assert definition.get("env_file") in (".env", [".env"]), f"{name}: reads .env"


def test_services_listen_on_their_ports(compose: Any, services: dict[str, Any]) -> None:
    for service, svc in services.items():
        definition = compose.services[service]
        env = environment(definition)
        assert env[f"{svc.env_prefix}HTTP_HOST"] == "0.0.0.0"
        assert env[f"{svc.env_prefix}HTTP_PORT"] == str(svc.http_port)
        published = [compose.interpolated(p).rsplit(":", 1)[-1] for p in definition["ports"]]
        assert published == [str(svc.http_port)], service


def test_builds_use_the_service_dockerfiles_from_the_root(
    compose: Any, services: dict[str, Any]
) -> None:
    built = set()
    for service, name, definition in compose.clientela_containers():
        build = definition.get("build")
        if build is None:
            continue
        assert build["context"] == ".", f"{name}: the workspace lock lives at the root"
        assert build["dockerfile"] == f"services/{service}/Dockerfile", name
        assert (ROOT / build["dockerfile"]).is_file()
        built.add(service)
    assert built == set(services)


def test_images_are_pinned(compose: Any) -> None:
    for name, definition in compose.services.items():
        image = compose.interpolated(str(definition["image"]))
        if image.startswith("clientela/"):
            assert re.fullmatch(r"clientela/[a-z]+:<IMAGE_TAG>", image), name
            assert compose.variables()["IMAGE_TAG"][1], "IMAGE_TAG needs a default"
        else:
            assert PINNED.fullmatch(image), f"{name}: pin {image} to a version"


def test_dependencies_wait_for_health(compose: Any, services: dict[str, Any]) -> None:
    defined = compose.services
    for name, definition in defined.items():
        for dependency, condition in depends_on(definition).items():
            assert dependency in defined, f"{name} depends on unknown {dependency}"
            assert condition in ("service_healthy", "service_completed_successfully"), name
            target = defined[dependency]
            if condition == "service_healthy":
                has_check = "healthcheck" in target and not target["healthcheck"].get("disable")
                built_with_check = str(target.get("image", "")).startswith("clientela/")
                assert has_check or built_with_check, f"{dependency} has no health check"
            else:
                assert target.get("restart") == "no", f"{dependency} is a one-shot job"
    for service, svc in services.items():
        deps = depends_on(defined[service])
        assert deps.get("kafka") == "service_healthy", service
        assert deps.get("topics") == "service_completed_successfully", service
        if svc.needs_cache:
            assert deps.get("redis") == "service_healthy", service
        migrations = [
            d
            for d, c in deps.items()
            if c == "service_completed_successfully" and defined[d].get("command") == ["migrate"]
        ]
        assert len(migrations) == (1 if svc.needs_database else 0), service


def test_migration_jobs_run_each_database_service_migrate(
    compose: Any, services: dict[str, Any]
) -> None:
    jobs = {
        service: definition
        for service, _, definition in compose.clientela_containers()
        if definition.get("command") == ["migrate"]
    }
    assert set(jobs) == {n for n, s in services.items() if s.needs_database}
    for service, job in jobs.items():
        assert job["image"] == compose.services[service]["image"], "same release as the service"
        assert job["restart"] == "no"
        assert depends_on(job) == {"postgres": "service_healthy"}
        assert (
            environment(job)["CLIENTELA_DATABASE_URL"]
            == environment(compose.services[service])["CLIENTELA_DATABASE_URL"]
        )


def test_state_lives_in_named_volumes(compose: Any) -> None:
    declared = set(compose.data.get("volumes", {}))
    used = set()
    for name, definition in compose.services.items():
        for mount in definition.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                continue
            assert source in declared, f"{name}: volume {source} is not declared"
            used.add(source)
    assert used == declared
    for stateful in ("kafka", "postgres", "redis"):
        mounts = [m.split(":")[0] for m in compose.services[stateful].get("volumes", [])]
        assert any(m in declared for m in mounts), f"{stateful} keeps its data in a named volume"


def test_containers_are_hardened(compose: Any) -> None:
    for _, name, definition in compose.clientela_containers():
        assert definition.get("read_only") is True, name
        assert definition.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in definition.get("security_opt", []), name
        assert definition.get("init") is True, name


def test_no_secret_in_plain_values(compose: Any) -> None:
    for name, definition in compose.services.items():
        for key, value in environment(definition).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", value), f"{name}: {key}"
            for match in URL_CREDENTIALS.finditer(value):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", match.group(1)), f"{name}: {key}"
    for name, (operator, _) in compose.variables().items():
        if SECRET_NAME.search(name):
            assert operator == ":?", f"{name} is a secret: required, never defaulted"


def test_env_example_lists_every_setting(compose: Any, all_env_vars: frozenset[str]) -> None:
    listed: dict[str, tuple[bool, str]] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        match = ENV_LINE.match(line)
        if match:
            listed.setdefault(match.group(2), (match.group(1) is None, match.group(3)))
    variables = compose.variables()
    unknown = set(listed) - all_env_vars - set(variables)
    assert not unknown, f".env.example lists variables nothing reads: {sorted(unknown)}"
    missing = (all_env_vars | set(variables)) - set(listed)
    assert not missing, f".env.example misses {sorted(missing)}"
    for name, (operator, _) in variables.items():
        if operator == ":?":
            assert listed[name] == (True, ""), f"{name} is required: listed, empty, uncommented"
        else:
            assert listed[name][0] is False, f"{name} is optional: commented out"
