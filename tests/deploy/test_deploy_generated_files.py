"""The files generated from the topic registry and the settings classes are up to date."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip(
    "yaml", reason="PyYAML is not installed: add pyyaml to the dev dependency group"
)
ROOT = Path(__file__).resolve().parents[2]


def test_topic_manifests_are_fresh(generate_topics: ModuleType) -> None:
    stale = generate_topics.stale_files(generate_topics.render())
    assert not stale, (
        f"stale: {[str(p.relative_to(ROOT)) for p in stale]}; "
        "run `uv run python deploy/generate_topics.py`"
    )


def test_env_example_is_fresh(generate_env_example: ModuleType) -> None:
    current = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert current == generate_env_example.render(), (
        ".env.example is stale (a setting was added or docker-compose.yml changed); "
        "run `uv run python deploy/generate_env_example.py`"
    )


def test_generators_are_deterministic(
    generate_topics: ModuleType, generate_env_example: ModuleType
) -> None:
    assert generate_topics.render() == generate_topics.render()
    assert generate_env_example.render() == generate_env_example.render()
