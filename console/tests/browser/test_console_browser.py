"""The console in a real browser (Debian's Chromium via Playwright) on the running platform.

The four services and the console run as processes on the embedded broker, loaded with the
synthetic population plus one hand-made customer whose two profiles merge; each page is
checked for its content and saved as a screenshot under docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from clientela.platform.launcher import SERVICES, Platform, PlatformSettings
from clientela.platform.population import Population, PopulationSpec
from clientela.shared.embedded_broker import free_port
from clientela.shared.settings import DEV_ADMIN_KEY, DEV_READ_KEY, DEV_WRITE_KEY, KafkaSettings

CHROMIUM = os.environ.get("CONSOLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
# The packaged campaigns plus one that reaches every new customer, with a large control group,
# so the campaign pages have treated and control people to compare.
DEMO_CAMPAIGN = """
[[campaigns]]
id = "first-tier-welcome"
name = "Welcome every new customer"
trigger = ["tier_entered", "tier_up"]
to_tiers = ["A", "B", "C"]
lifecycles = ["customer"]
purpose = "loyalty"
channels = ["email", "sms", "phone"]
variants = { A = "welcome-a", B = "welcome-b", C = "welcome-c" }
holdout_share = 0.3
"""
ADA = {"customer_id": "C-ADA-1815", "email": "ada.lovelace@clientela.dev", "phone": "+12025550143"}

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is absent"
)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)",
    ),
]


@dataclass
class Stack:
    """The running platform and console, and the demo customer's profile id."""

    platform: Platform
    console_url: str
    ada: str


def wait_for(
    what: str,
    check: Callable[[], Any],
    timeout_s: float = 60,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll until check() returns something truthy; fail with what was awaited (and why)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out waiting for {what}" + (f": {explain()}" if explain else "")
            )
        time.sleep(0.3)


def ada_touchpoints(
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """One customer met at the branch and on the web, and (separately) on the phone."""

    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    ids = {"customer_id": ADA["customer_id"], "email": ADA["email"]}
    rep = {"agent_id": "rep-3", "role": "sales_rep", "team": "Branch 07"}

    def sale(n: int, days: float, amount: str, channel: str, category: str) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_id": f"ada-sale-{n}",
            "occurred_at": at(days),
            "kind": "sale",
            "channel": channel,
            "direction": "inbound",
            "identifiers": ids,
            "sale": {
                "order_id": f"ADA-{n}",
                "amount": amount,
                "currency": "EUR",
                "items": [{"sku": f"SKU-{category}", "category": category, "quantity": 1}],
            },
        }
        if channel == "branch":
            event["agent"] = rep
        return event

    known = [
        sale(1, 200, "2400.00", "branch", "outerwear"),
        {
            "event_id": "ada-visit-1",
            "occurred_at": at(150),
            "kind": "branch_visit",
            "channel": "branch",
            "direction": "inbound",
            "identifiers": ids,
            "agent": rep,
            "branch_visit": {"branch_id": "B07", "purpose": "fitting"},
        },
        sale(2, 120, "3100.00", "web", "bags"),
        {
            "event_id": "ada-web-1",
            "occurred_at": at(60),
            "kind": "web_visit",
            "channel": "web",
            "direction": "inbound",
            "identifiers": {**ids, "anonymous_id": "anon-ada"},
            "web_visit": {"page_views": 7},
            "consent": [{"channel": "email", "status": "opted_in"}],
        },
        sale(3, 30, "1800.00", "branch", "outerwear"),
    ]
    phone_only = [
        {
            "event_id": "ada-call-1",
            "occurred_at": at(20),
            "kind": "phone_call",
            "channel": "phone",
            "direction": "inbound",
            "identifiers": {"phone": ADA["phone"]},
            "agent": {"agent_id": "agent-7", "role": "call_agent", "team": "Service desk"},
            "call": {"duration_seconds": 250, "outcome": "resolved", "reason": "delivery"},
        }
    ]
    linking = {
        "event_id": "ada-email-1",
        "occurred_at": at(5),
        "kind": "email",
        "channel": "email",
        "direction": "outbound",
        "identifiers": {"email": ADA["email"], "phone": ADA["phone"]},
        "email": {"opened": True, "clicked": True, "subject": "Your autumn fitting"},
    }
    return known, phone_only, linking


@pytest.fixture(scope="module")
def stack(
    kafka_settings: KafkaSettings, tmp_path_factory: pytest.TempPathFactory, run_id: str
) -> Iterator[Stack]:
    """Run the services and the console, loaded with the population and the demo customer."""
    state = tmp_path_factory.mktemp("console-stack")
    ports = {service: free_port() for service in (*SERVICES, "console")}
    packaged = resources.files("clientela.campaign").joinpath("campaigns.toml").read_text()
    campaigns = state / "campaigns.toml"
    campaigns.write_text(packaged + DEMO_CAMPAIGN)
    settings = PlatformSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers,
        data_dir=state / "data",
        topic_prefix=f"{kafka_settings.topic_prefix}console.",
        ports=ports,
        extra_env={
            "CLIENTELA_CACHE_KEY_PREFIX": f"t{run_id}:console:",
            "CLIENTELA_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "CLIENTELA_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "SCORING_CUTOFF_REFRESH_S": "1",
            "CAMPAIGN_CAMPAIGNS_FILE": str(campaigns),
        },
    )
    platform = Platform(settings, log_dir=state / "logs")
    console_env = {
        **settings.env_for("console"),
        "CONSOLE_PROFILE_URL": settings.url("profile"),
        "CONSOLE_SCORING_URL": settings.url("scoring"),
        "CONSOLE_CAMPAIGN_URL": settings.url("campaign"),
        "CONSOLE_SESSION_SECRET": secrets.token_urlsafe(32),
    }
    console_log = (state / "logs").joinpath("console.log")
    try:
        platform.start(timeout_s=120)
        with console_log.open("ab") as log:
            console = subprocess.Popen(
                [sys.executable, "-m", "clientela.console", "serve"],
                env=console_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            console_url = f"http://127.0.0.1:{ports['console']}"
            yield Stack(platform, console_url, load(platform, console_url))
        finally:
            console.terminate()
            console.wait(timeout=15)
    except Exception:
        print(console_log.read_text(errors="replace")[-3000:] if console_log.exists() else "")
        raise
    finally:
        platform.stop()


def load(platform: Platform, console_url: str) -> str:
    """Post the demo data; wait until the services and the console have taken it in."""
    s = platform.settings
    write = {"Authorization": f"Bearer {DEV_WRITE_KEY}"}
    read = {"Authorization": f"Bearer {DEV_READ_KEY}"}
    known, phone_only, linking = ada_touchpoints(datetime.now(UTC))
    population = list(Population(PopulationSpec(people=400, seed=11)).touchpoints(3000))
    with httpx.Client(timeout=60) as client:

        def post(events: list[dict[str, Any]]) -> None:
            for i in range(0, len(events), 500):
                answer = client.post(
                    s.url("ingest") + "/v1/touchpoints", json=events[i : i + 500], headers=write
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["rejected"] == 0, answer.text

        def profile_of(kind: str, value: str) -> str | None:
            answer = client.get(s.url("profile") + f"/v1/profiles/by/{kind}/{value}", headers=read)
            return answer.json()["profile_id"] if answer.status_code == 200 else None

        post(known + phone_only + population)
        before_merge = {
            wait_for("both profiles", lambda: profile_of("customer_id", ADA["customer_id"])),
            wait_for("the phone profile", lambda: profile_of("phone", ADA["phone"])),
        }
        post([linking])
        ada = wait_for(
            "the merge",
            lambda: (
                (pid := profile_of("customer_id", ADA["customer_id"]))
                and pid == profile_of("phone", ADA["phone"])
                and pid
            ),
        )

        def pipeline_state() -> str:
            # What scoring and campaign hold of the demo customer's profiles (both before the
            # merge, and the survivor), for a failure to say where the decision stopped.
            seen = {
                pid: (
                    client.get(s.url("scoring") + f"/v1/scores/{pid}", headers=read).text[:300],
                    client.get(
                        s.url("campaign") + f"/v1/profiles/{pid}/messages", headers=read
                    ).text[:300],
                )
                for pid in sorted(before_merge | {ada})
            }
            return f"survivor {ada}: {seen}"

        wait_for(
            "a campaign decision for the demo customer",
            lambda: client.get(
                s.url("campaign") + f"/v1/profiles/{ada}/messages", headers=read
            ).json()["messages"],
            # Four services work through 3,000 touchpoints first: on a busy machine that can
            # take longer than the other waits allow.
            timeout_s=180,
            explain=pipeline_state,
        )
        # Responses after the decisions: the same people buy again now, so campaigns have
        # conversions to compare between treated and control people.
        wave = Population(PopulationSpec(people=400, seed=11, days=0)).touchpoints(600)
        post([{**e, "event_id": "now-" + e["event_id"]} for e in wave])
        wait_for(
            "campaign results",
            lambda: any(
                c["total"]["treated"]["size"] and c["total"]["control"]["size"]
                for c in client.get(s.url("campaign") + "/v1/roi", headers=read).json()["campaigns"]
            ),
        )
    wait_for("the console", lambda: httpx.get(console_url + "/readyz").status_code == 200)
    with httpx.Client(base_url=console_url, timeout=30) as console:
        page = console.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        console.post("/login", data={"api_key": DEV_READ_KEY, "csrf_token": token.group(1)})
        wait_for(
            "the console's read model",
            lambda: (
                ada in console.get(f"/customers/{ada}").text
                and "has not been merged" not in console.get(f"/customers/{ada}").text
            ),
        )
        wait_for(
            "tier moves in the read model",
            lambda: "No tier moves seen yet" not in console.get("/base").text,
        )
    return ada


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    """Return a headless Chromium page signed in with the admin key."""
    with playwright_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport={"width": 1366, "height": 900})
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            yield page
        finally:
            context.close()
            chromium.close()


def shot(page: Any, name: str) -> None:
    """Save the whole page as docs/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_in_refuses_a_wrong_key_then_admits_an_admin(stack: Stack, browser: Any) -> None:
    page = browser
    page.goto(stack.console_url + "/base")
    assert page.url.startswith(stack.console_url + "/login")
    page.fill("#api_key", "not-a-key")
    page.click("button[type=submit]")
    assert "do not know this key" in page.inner_text("main")
    shot(page, "login")
    page.fill("#api_key", DEV_ADMIN_KEY)
    page.click("button[type=submit]")
    page.wait_for_url(stack.console_url + "/base")
    assert "admin key" in page.inner_text("header")


def test_customer_base(stack: Stack, browser: Any) -> None:
    page = browser
    page.goto(stack.console_url + "/base")
    text = page.inner_text("main")
    assert "Pareto: who brings the value" in text
    assert page.locator("svg.pareto polyline.curve").count() == 1
    assert page.locator("svg.pareto rect.band").count() >= 2  # A, B (and C) bands
    assert re.search(r"tier A.*\d", page.inner_text("#tiers"), re.S)
    assert page.locator("#migrations svg.migrations rect").count() >= 1
    assert "Touchpoints per channel, by tier" in page.inner_html("#channel-mix")
    shot(page, "customer-base")


def test_customer_search_and_360(stack: Stack, browser: Any) -> None:
    page = browser
    page.goto(stack.console_url + "/customers")
    assert page.locator("#top-customers tbody tr").count() >= 5
    shot(page, "customers")
    page.select_option("#id_type", "email")
    page.fill("#value", ADA["email"].upper())
    page.click("#search button[type=submit]")
    page.wait_for_url(f"{stack.console_url}/customers/{stack.ada}")
    assert ADA["email"] not in page.url  # identifiers never travel in the address
    main = page.inner_text("main")
    for expected in (
        ADA["customer_id"],
        ADA["phone"],
        "7,300.00 EUR",  # total spend in the golden record
        "rep-3 (sales rep, Branch 07)",  # who handled it
        "agent-7 (call agent, Service desk)",
        "call of 4m10s, resolved",  # how
        "opened, clicked",
        "WHY",  # the scores' explanation (headings are upper-cased by the style sheet)
        "TIER HISTORY",
        "opted in",  # consent
        "shared_touchpoint",  # merge history
        "Split off",  # the admin unmerge action
    ):
        assert expected in main, expected
    assert page.locator("#scores .tier").count() >= 1
    assert page.locator("#messages tbody tr").count() >= 1
    assert "linked" in page.inner_text("#identifiers")
    shot(page, "customer-360")
    page.select_option("#channel", "phone")
    page.wait_for_url(re.compile(r".*channel=phone"))
    assert "phone call" in page.inner_text("#timeline")
    assert "sale" not in page.inner_text("#timeline tbody")


def test_campaigns(stack: Stack, browser: Any) -> None:
    page = browser
    page.goto(stack.console_url + "/campaigns")
    assert page.locator("#campaigns tbody tr").count() >= 5
    shot(page, "campaigns")
    page.click("#campaigns a[href='/campaigns/first-tier-welcome']")
    page.wait_for_url(stack.console_url + "/campaigns/first-tier-welcome")
    text = page.inner_text("main")
    assert "Treated against control" in text
    assert "What the channel learner believes" in text
    assert page.locator("#treated-vs-control svg.intervals").count() == 1
    assert page.locator("#roi-by-channel tbody tr").count() >= 1
    shot(page, "campaign")


def test_an_admin_unmerges_a_profile(stack: Stack, browser: Any) -> None:
    page = browser
    page.goto(f"{stack.console_url}/customers/{stack.ada}")
    page.check(f"input[name=identifier][value='phone:{ADA['phone']}']")
    page.fill("#reason", "phone belongs to a relative")
    page.click("form.split button[type=submit]")
    page.wait_for_url(f"{stack.console_url}/customers/{stack.ada}")
    flash = page.inner_text(".flash")
    assert "Split 1 identifier(s)" in flash
    new_id = flash.rsplit(" ", 1)[-1].rstrip(".")
    assert ADA["phone"] not in page.inner_text("#identifiers")
    shot(page, "customer-unmerged")
    page.goto(f"{stack.console_url}/customers/{new_id}")
    assert ADA["phone"] in page.inner_text("#identifiers")
