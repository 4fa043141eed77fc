"""Each service's Dockerfile: multi-stage, uv from the workspace lock, pinned bases, an
unprivileged user, a health check on /healthz, and an entrypoint the package installs."""

from __future__ import annotations

import glob
import importlib.util
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in ROOT.glob("services/*/pyproject.toml"))
PINNED = re.compile(r"[^:@\s]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?")


@dataclass
class Stage:
    """One build stage: its base and its instructions."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        """Return the arguments of every instruction of a kind."""
        return [a for i, a in self.instructions if i == instruction]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Return the global ARG defaults and the stages of a Dockerfile."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction, arguments = instruction.upper(), " ".join(arguments.split())
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)(?: AS (\S+))?", arguments, re.IGNORECASE)
            assert match, f"{path}: cannot read FROM {arguments}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], match.group(1))
            stages.append(Stage(base, match.group(2)))
        elif not stages and instruction == "ARG":
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif stages:
            stages[-1].instructions.append((instruction, arguments))
    return global_args, stages


def workspace_members() -> dict[str, Path]:
    """Return {package name: directory} of every workspace member."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members: dict[str, Path] = {}
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        for directory in sorted(glob.glob(str(ROOT / pattern))):
            pyproject = Path(directory) / "pyproject.toml"
            if pyproject.is_file():
                members[tomllib.loads(pyproject.read_text())["project"]["name"]] = Path(directory)
    return members


def workspace_closure(package: str, members: dict[str, Path]) -> set[str]:
    """Return the workspace packages a package needs, itself included."""
    needed, pending = set(), [package]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        project = tomllib.loads((members[name] / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            dependency = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
            if dependency in members:
                pending.append(dependency)
    return needed


@pytest.fixture(scope="module", params=SERVICES)
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, dict[str, str], list[Stage]]:
    """(service, global args, stages) of a service's Dockerfile."""
    path = ROOT / "services" / request.param / "Dockerfile"
    assert path.is_file(), f"services/{request.param}/Dockerfile is missing"
    return (request.param, *parse_dockerfile(path))


def test_is_multi_stage_on_pinned_bases(
    dockerfile: tuple[str, dict[str, str], list[Stage]],
) -> None:
    service, _, stages = dockerfile
    assert len(stages) >= 2, f"{service}: build and runtime stages"
    names = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base not in names:
            assert PINNED.fullmatch(stage.base), f"{service}: pin {stage.base} to a full version"
    assert stages[-1].base not in names, f"{service}: the runtime starts from a clean base"


def test_installs_from_the_workspace_lock_with_uv(
    dockerfile: tuple[str, dict[str, str], list[Stage]], services: dict[str, Any]
) -> None:
    service, _, stages = dockerfile
    members = workspace_members()
    package = next(n for n, d in members.items() if d == ROOT / "services" / service)
    copies = [c for stage in stages for c in stage.args("COPY")]
    runs = " ".join(r for stage in stages for r in stage.args("RUN"))
    assert any("uv.lock" in c.split() for c in copies), f"{service}: copy uv.lock"
    assert re.search(rf"uv sync --locked .*--no-dev .*--package {package}\b", runs), service
    for directory in members.values():
        relative = directory.relative_to(ROOT)
        assert any(f"{relative}/pyproject.toml" in c for c in copies), (
            f"{service}: `uv sync --locked` needs {relative}/pyproject.toml"
        )
    for dependency in workspace_closure(package, members):
        relative = members[dependency].relative_to(ROOT)
        assert any(c.split()[0] in (f"{relative}/", str(relative)) for c in copies), (
            f"{service}: copy the sources of {dependency} ({relative}/)"
        )


def test_runs_unprivileged_with_a_health_check(
    dockerfile: tuple[str, dict[str, str], list[Stage]], services: dict[str, Any]
) -> None:
    service, _, stages = dockerfile
    runtime, svc = stages[-1], services[service]
    (user,) = runtime.args("USER")
    assert user.split(":")[0] not in ("root", "0"), f"{service}: run as a non-root user"
    (healthcheck,) = runtime.args("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert f"{svc.env_prefix}HTTP_PORT" in healthcheck
    assert svc.serves("/healthz")
    env = " ".join(runtime.args("ENV"))
    assert f"{svc.env_prefix}HTTP_HOST=0.0.0.0" in env, "listen beyond the container's loopback"
    assert f"{svc.env_prefix}HTTP_PORT={svc.http_port}" in env
    assert runtime.args("EXPOSE") == [str(svc.http_port)]


def test_entrypoint_is_the_packages_console_script(
    dockerfile: tuple[str, dict[str, str], list[Stage]], services: dict[str, Any]
) -> None:
    service, _, stages = dockerfile
    runtime, svc = stages[-1], services[service]
    (entrypoint,) = runtime.args("ENTRYPOINT")
    (command,) = runtime.args("CMD")
    script = json.loads(entrypoint)
    assert len(script) == 1, f"{service}: ENTRYPOINT in exec form, the script alone"
    assert script[0] in svc.scripts, f"{service}'s pyproject.toml declares no {script[0]}"
    module, _, function = svc.scripts[script[0]].partition(":")
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{script[0]} points at a missing module {module}"
    assert function, f"{script[0]} names no function"
    assert json.loads(command) == ["serve"]
