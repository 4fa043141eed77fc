"""API keys and settings: hashed keys, scopes, and refusal of development keys in production."""

from __future__ import annotations

import base64

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError

from clientela.shared.auth import KeyRing, Principal, hash_key, require_scope
from clientela.shared.settings import ApiKeySpec, AuthSettings, DatabaseSettings, KafkaSettings


def app_with(keyring: KeyRing) -> TestClient:
    """Return a client of an app with one read-scoped and one write-scoped route."""
    app = FastAPI()

    @app.get("/read")
    async def read(who: Principal = Depends(require_scope(keyring, "read"))) -> dict[str, str]:
        return {"who": who.name}

    @app.get("/write")
    async def write(who: Principal = Depends(require_scope(keyring, "write"))) -> dict[str, str]:
        return {"who": who.name}

    return TestClient(app)


def test_keys_are_checked_by_hash_and_scope() -> None:
    keyring = KeyRing([ApiKeySpec(name="crm", sha256=hash_key("s3cret"), scopes={"read"})])
    client = app_with(keyring)
    assert client.get("/read").status_code == 401
    assert client.get("/read", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/read", headers={"Authorization": "Bearer s3cret"}).json() == {"who": "crm"}
    assert client.get("/read", headers={"X-API-Key": "s3cret"}).status_code == 200
    basic = base64.b64encode(b"s3cret:").decode()
    assert client.get("/read", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/write", headers={"Authorization": "Bearer s3cret"}).status_code == 403


def test_development_keys_only_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTELA_DEV_WRITE_KEY", "w-key")
    keyring = KeyRing.from_settings(AuthSettings())
    assert keyring.authenticate("w-key") == Principal("dev-write", frozenset({"write"}))
    assert keyring.authenticate("dev-read-key") is not None
    monkeypatch.setenv("CLIENTELA_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="CLIENTELA_API_KEYS"):
        AuthSettings()
    monkeypatch.setenv(
        "CLIENTELA_API_KEYS",
        f'[{{"name": "pos", "sha256": "{hash_key("k")}", "scopes": ["write"]}}]',
    )
    prod = KeyRing.from_settings(AuthSettings())
    assert prod.authenticate("w-key") is None
    assert prod.authenticate("k") == Principal("pos", frozenset({"write"}))


def test_component_settings_read_their_own_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIENTELA_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("CLIENTELA_KAFKA_TOPIC_PREFIX", "x.")
    monkeypatch.setenv("CLIENTELA_DATABASE_SCHEMA_PREFIX", "t1_")
    kafka = KafkaSettings()
    assert kafka.bootstrap_servers == "kafka:9092"
    from clientela.shared.contracts.topics import TIER_CHANGES

    assert kafka.topic(TIER_CHANGES) == "x.tier-changes.v1"
    db = DatabaseSettings()
    assert db.resolved_schema("profile") == "t1_profile"
    assert db.resolved_url("profile").endswith("profile.db")
