"""Campaign definitions: the packaged file, the format, and the refusals at load time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clientela.campaign.adapters.outbound.campaign_file import load_catalog, parse_catalog
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.catalog import CampaignDefinitionError
from clientela.campaign.domain.model import TriggerKind
from clientela.shared.contracts import Channel, Lifecycle, MessagePurpose, Tier

VALID = """
[[campaigns]]
id = "vip"
name = "VIP"
trigger = "tier_up"
to_tiers = ["A"]
lifecycles = ["customer"]
purpose = "loyalty"
channels = ["email"]
variants = { A = "vip-a" }
"""


def campaign_toml(**fields: str) -> str:
    """Return a one-campaign document with some fields replaced (values are TOML literals)."""
    base = {
        "id": '"c1"',
        "name": '"Campaign"',
        "trigger": '"tier_up"',
        "to_tiers": '["A"]',
        "lifecycles": '["customer"]',
        "purpose": '"loyalty"',
        "channels": '["email", "sms"]',
        "variants": '{ A = "v1" }',
    }
    base.update(fields)
    body = "\n".join(f"{key} = {value}" for key, value in base.items() if value)
    return f"[[campaigns]]\n{body}\n"


def test_packaged_campaigns_load_with_the_documented_defaults() -> None:
    catalog = load_catalog()

    assert [c.id for c in catalog] == [
        "welcome-to-a",
        "grow-to-b",
        "slipping-a",
        "prospect-acquisition",
    ]
    welcome = catalog.get("welcome-to-a")
    assert welcome is not None
    assert welcome.trigger == {TriggerKind.TIER_ENTERED, TriggerKind.TIER_UP}
    assert welcome.channels == (Channel.PHONE, Channel.BRANCH, Channel.EMAIL, Channel.SMS)
    assert welcome.purpose is MessagePurpose.LOYALTY
    acquisition = catalog.get("prospect-acquisition")
    assert acquisition is not None
    assert acquisition.lifecycles == {Lifecycle.PROSPECT}
    assert acquisition.to_tiers == {Tier.P}
    assert all(c.holdout_share == 0.1 and c.enabled for c in catalog)


def test_a_single_trigger_and_defaults_are_accepted() -> None:
    campaign = next(iter(parse_catalog(VALID)))

    assert campaign.trigger == {TriggerKind.TIER_UP}
    assert campaign.holdout_share == 0.1
    assert campaign.from_tiers is None


def test_an_operator_file_replaces_the_packaged_one(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(VALID)

    assert [c.id for c in load_catalog(path)] == ["vip"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"purpose": '"acquisition"', "to_tiers": '["P"]', "variants": '{ P = "v" }'},
            "acquisition campaigns are for prospects only",
            id="acquisition-for-customers",
        ),
        pytest.param(
            {"lifecycles": '["prospect"]', "to_tiers": '["P"]', "variants": '{ P = "v" }'},
            "loyalty campaigns are for customers only",
            id="loyalty-for-prospects",
        ),
        pytest.param(
            {"purpose": '"acquisition"', "lifecycles": '["prospect"]'},
            "acquisition campaigns target tier P only",
            id="acquisition-into-a",
        ),
        pytest.param({"to_tiers": '["A", "B"]'}, "no variant for tier(s) B", id="variant-missing"),
        pytest.param({"channels": '["email", "email"]'}, "must not repeat", id="repeated-channel"),
        pytest.param({"channels": '["pigeon"]'}, "channels", id="unknown-channel"),
        pytest.param({"holdout_share": "1.5"}, "holdout_share", id="holdout-above-one"),
        pytest.param({"trigger": '"tier_sideways"'}, "trigger", id="unknown-trigger"),
        pytest.param({"colour": '"red"'}, "colour", id="unknown-field"),
        pytest.param({"id": '"Has Spaces"'}, "id", id="bad-id"),
        pytest.param(
            {"trigger": '"tier_entered"', "from_tiers": '["B"]'},
            "from_tiers cannot match tier_entered",
            id="from-tiers-on-entered",
        ),
    ],
)
def test_invalid_definitions_are_refused_at_load_time(fields: dict[str, str], message: str) -> None:
    with pytest.raises(CampaignDefinitionError, match=re.escape(message)) as caught:
        parse_catalog(campaign_toml(**fields), "mine.toml")

    assert str(caught.value).startswith("mine.toml: campaign ")


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(CampaignDefinitionError, match="defined twice"):
        parse_catalog(campaign_toml() + campaign_toml())


def test_broken_toml_and_unknown_top_level_keys_are_refused() -> None:
    with pytest.raises(CampaignDefinitionError, match="not valid TOML"):
        parse_catalog("[[campaigns]\n")
    with pytest.raises(CampaignDefinitionError, match="unknown top-level key"):
        parse_catalog('campaign = "typo"\n')


def test_settings_read_the_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_TIER_CHANNELS", '{"A": ["branch", "phone"], "P": ["email"]}')
    monkeypatch.setenv("CAMPAIGN_GLOBAL_HOLDOUT_SHARE", "0")
    monkeypatch.setenv("CAMPAIGN_CAMPAIGNS_FILE", "/etc/clientela/campaigns.toml")

    settings = CampaignSettings()

    assert settings.tier_channels == {
        Tier.A: [Channel.BRANCH, Channel.PHONE],
        Tier.P: [Channel.EMAIL],
    }
    assert settings.global_holdout_share == 0
    assert settings.campaigns_file == Path("/etc/clientela/campaigns.toml")
    assert settings.http_port == 8084
    assert settings.group_id == "clientela-campaign"


def test_settings_use_the_documented_defaults() -> None:
    settings = CampaignSettings()

    assert settings.global_holdout_share == 0.05
    assert settings.tier_channels[Tier.A] == [
        Channel.PHONE,
        Channel.BRANCH,
        Channel.EMAIL,
        Channel.SMS,
    ]
    assert settings.tier_channels[Tier.P] == [Channel.EMAIL]
