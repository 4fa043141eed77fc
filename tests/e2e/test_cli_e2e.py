"""The `clientela` command line against the running platform."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from clientela.platform.cli import run
from clientela.platform.launcher import SERVICES, Platform
from clientela.shared.contracts import topics

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Platform:
    """Point the command line at the running platform."""
    for service in SERVICES:
        monkeypatch.setenv(f"CLIENTELA_{service.upper()}_URL", platform.settings.url(service))
    monkeypatch.setenv("CLIENTELA_KAFKA_BOOTSTRAP_SERVERS", platform.settings.bootstrap_servers)
    monkeypatch.setenv("CLIENTELA_KAFKA_TOPIC_PREFIX", platform.settings.topic_prefix)
    return platform


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """Run the command line with --json; return its exit code and parsed output."""
    capsys.readouterr()
    code = run(["--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def wait_for_profile(capsys: pytest.CaptureFixture[str], kind: str, value: str) -> Any:
    """Poll `profile lookup` until the profile exists."""
    deadline = time.monotonic() + 60
    while True:
        code, body = cli_json(capsys, "profile", "lookup", kind, value)
        if code == 0:
            return body
        assert code == 3, code
        assert time.monotonic() < deadline, f"{kind} {value} never appeared"
        time.sleep(0.3)


def test_simulate_then_look_people_up(
    cli_env: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    code, counts = cli_json(capsys, "simulate", "--events", "300", "--people", "40", "--seed", "99")
    assert code == 0
    assert counts["accepted"] + counts["duplicates"] == 300
    assert counts["rejected"] == 0
    profile = wait_for_profile(capsys, "customer_id", "C-99-0000000")
    assert profile["aggregates"]["purchase_count"] >= 1
    code, same = cli_json(capsys, "profile", "get", profile["profile_id"])
    assert code == 0
    assert same["profile_id"] == profile["profile_id"]
    code, timeline = cli_json(capsys, "profile", "timeline", profile["profile_id"])
    assert code == 0
    assert timeline


def test_errors_have_distinct_exit_codes(
    cli_env: Platform, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["profile", "get", "no-such-profile"]) == 3
    monkeypatch.setenv("CLIENTELA_READ_KEY", "wrong")
    assert run(["profile", "get", "no-such-profile"]) == 4
    monkeypatch.setenv("CLIENTELA_PROFILE_URL", "http://127.0.0.1:9")
    assert run(["profile", "get", "x"]) == 5
    assert run(["profile", "erase", "x"]) == 2  # refuses without --yes
    assert "clientela:" in capsys.readouterr().err


def test_dead_letters_can_be_listed_inspected_and_replayed(
    cli_env: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_env.settings

    async def send_garbage() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic_prefix + topics.TOUCHPOINTS.name,
                b"{definitely not json",
                key=b"cli-dlq",
            )
        finally:
            await producer.stop()

    asyncio.run(send_garbage())
    deadline = time.monotonic() + 60
    letters: list[dict[str, Any]] = []
    while not letters:
        assert time.monotonic() < deadline, "no dead letter appeared"
        code, rows = cli_json(capsys, "dlq", "list", "--service", "profile")
        assert code == 0
        letters = [row for row in rows if row["reason_code"] == "undecodable"]
        time.sleep(0.3)
    first = letters[0]
    code, full = cli_json(
        capsys,
        "dlq",
        "inspect",
        "--service",
        "profile",
        str(first["partition"]),
        str(first["offset"]),
    )
    assert code == 0
    assert full["original_value"] == "{definitely not json"
    code, dry = cli_json(
        capsys, "dlq", "replay", "--service", "profile", "--reason", "undecodable", "--dry-run"
    )
    assert code == 0
    assert dry["would_replay"] >= 1


def test_campaigns_can_be_listed_and_reported(
    cli_env: Platform, capsys: pytest.CaptureFixture[str]
) -> None:
    code, campaigns = cli_json(capsys, "campaign", "list")
    assert code == 0
    assert "e2e-welcome" in json.dumps(campaigns)
    code, report = cli_json(capsys, "campaign", "report", "e2e-welcome")
    assert code == 0
    assert report["stats"]["campaign_id"] == "e2e-welcome"
    assert report["roi"]["campaign_id"] == "e2e-welcome"
    assert run(["campaign", "report", "no-such-campaign"]) == 3


def test_a_replayed_file_feeds_a_profile_an_admin_can_split(
    cli_env: Platform, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    customer = f"C-{uuid.uuid4().hex[:10]}"
    email = f"{customer.lower()}@split.test"
    lines = [
        {
            "event_id": f"{customer}-1",
            "kind": "web_visit",
            "channel": "web",
            "direction": "inbound",
            "identifiers": {"customer_id": customer, "email": email},
            "web_visit": {"page_views": 1},
        },
        {
            "event_id": f"{customer}-2",
            "kind": "web_visit",
            "channel": "web",
            "direction": "inbound",
            "identifiers": {"customer_id": customer, "device_id": f"{customer}-device"},
            "web_visit": {"page_views": 2},
        },
    ]
    feed = tmp_path / "touchpoints.jsonl"
    feed.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    code, counts = cli_json(capsys, "replay", str(feed))
    assert code == 0
    assert counts["accepted"] == 2
    profile = wait_for_profile(capsys, "customer_id", customer)
    code, split = cli_json(
        capsys,
        "profile",
        "split",
        profile["profile_id"],
        "email",
        email,
        "--reason",
        "wrongly linked",
    )
    assert code == 0, split
    assert split["new_profile_id"] != profile["profile_id"]
    code, moved = cli_json(capsys, "profile", "lookup", "email", email)
    assert code == 0
    assert moved["profile_id"] == split["new_profile_id"]
