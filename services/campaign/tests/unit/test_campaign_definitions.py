"""Campaign definitions: the packaged file, the format, and the refusals at load time."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

import pytest

from clientela.campaign.adapters.outbound.campaign_file import load_catalog, parse_catalog
from clientela.campaign.config import CampaignSettings
from clientela.campaign.domain.catalog import CampaignDefinitionError
from clientela.campaign.domain.contact_policy import CapLimits
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
            "from_tiers needs a tier_up or tier_down trigger",
            id="from-tiers-on-entered",
        ),
        pytest.param(
            {"trigger": '"inactivity"'},
            "inactive_days is required by, and only by, the inactivity trigger",
            id="inactivity-without-days",
        ),
        pytest.param(
            {"inactive_days": "30"},
            "inactive_days is required by, and only by, the inactivity trigger",
            id="days-without-inactivity",
        ),
        pytest.param(
            {"trigger": '"cross_sell"'},
            "cross_sell is required by, and only by, the cross_sell trigger",
            id="cross-sell-without-rule",
        ),
        pytest.param(
            {"trigger": '"cross_sell"', "cross_sell": '{ bought = ["a"], offer = "a" }'},
            "must not be one already required",
            id="cross-sell-offers-what-was-bought",
        ),
        pytest.param(
            {"trigger": '"high_potential"'},
            "high_potential is a prospect trigger",
            id="high-potential-for-customers",
        ),
        pytest.param(
            {
                "purpose": '"acquisition"',
                "lifecycles": '["prospect"]',
                "to_tiers": '["P"]',
                "variants": '{ P = "v" }',
                "trigger": '"first_purchase"',
            },
            "acquisition campaigns cannot use customer-only triggers",
            id="acquisition-on-first-purchase",
        ),
        pytest.param(
            {"starts_at": "2025-03-02T00:00:00Z", "ends_at": "2025-03-01T00:00:00Z"},
            "ends_at must be after starts_at",
            id="schedule-backwards",
        ),
        pytest.param({"budget": "-1"}, "budget", id="negative-budget"),
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
    policy = settings.decision_policy()
    assert policy.contact.global_caps.day == 1
    assert policy.contact.global_caps.week == 3
    assert policy.contact.quiet_channels == {
        Channel.PHONE,
        Channel.SMS,
        Channel.APP,
        Channel.BRANCH,
    }
    assert policy.economics.cost(Channel.BRANCH) > policy.economics.cost(Channel.PHONE)
    assert policy.economics.cost(Channel.PHONE) > policy.economics.cost(Channel.EMAIL)


def test_contact_policy_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMPAIGN_GLOBAL_CAPS", '{"day": 2, "week": null}')
    monkeypatch.setenv("CAMPAIGN_CHANNEL_CAPS", '{"sms": {"day": 0}}')
    monkeypatch.setenv("CAMPAIGN_QUIET_HOURS_START", "22:30")
    monkeypatch.setenv("CAMPAIGN_DEFAULT_TIMEZONE", "Europe/Madrid")
    monkeypatch.setenv("CAMPAIGN_CHANNEL_COSTS", '{"email": 0.01}')

    policy = CampaignSettings().decision_policy()

    assert (policy.contact.global_caps.day, policy.contact.global_caps.week) == (2, None)
    assert policy.contact.channel_caps == {Channel.SMS: CapLimits(day=0, week=None)}
    assert policy.contact.quiet_start == time(22, 30)
    assert policy.contact.default_timezone == "Europe/Madrid"
    assert policy.economics.cost(Channel.EMAIL) == 0.01


def test_an_unknown_default_time_zone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_DEFAULT_TIMEZONE", "Mars/Olympus")

    with pytest.raises(ValueError, match="unknown time zone"):
        CampaignSettings()
