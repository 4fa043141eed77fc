"""Contact policy: quiet hours in the person's zone, cap counters, the in-process ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time

from clientela.campaign.adapters.outbound.contact_ledger import MemoryContactLedger
from clientela.campaign.application.ports import ContactRequest
from clientela.campaign.domain.contact_policy import (
    CapCounter,
    ContactPolicy,
    cap_counters,
    quiet_until,
)
from clientela.campaign.domain.model import Contact
from clientela.shared.contracts import Channel, Lifecycle

POLICY = ContactPolicy()


def person(zone: str | None = None, pid: str = "p-1") -> Contact:
    traits = {"timezone": zone} if zone else {}
    return Contact(pid, 1, Lifecycle.CUSTOMER, frozenset(Channel), traits=traits)


def test_quiet_hours_follow_the_persons_time_zone() -> None:
    noon_utc = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    assert quiet_until(person(), Channel.PHONE, noon_utc, POLICY) is None
    # 21:00 in Tokyo: quiet until 08:00 there, 23:00 UTC.
    assert quiet_until(person("Asia/Tokyo"), Channel.PHONE, noon_utc, POLICY) == datetime(
        2025, 3, 1, 23, 0, tzinfo=UTC
    )
    # Email waits in an inbox: it never interrupts, so quiet hours do not hold it back.
    assert quiet_until(person("Asia/Tokyo"), Channel.EMAIL, noon_utc, POLICY) is None


def test_quiet_hours_before_midnight_end_the_next_morning_and_after_midnight_the_same() -> None:
    late = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)
    early = datetime(2025, 3, 2, 3, 0, tzinfo=UTC)

    assert quiet_until(person(), Channel.SMS, late, POLICY) == datetime(
        2025, 3, 2, 8, 0, tzinfo=UTC
    )
    assert quiet_until(person(), Channel.SMS, early, POLICY) == datetime(
        2025, 3, 2, 8, 0, tzinfo=UTC
    )


def test_an_unknown_zone_falls_back_to_the_default_and_a_day_window_works() -> None:
    policy = ContactPolicy(quiet_start=time(12, 0), quiet_end=time(14, 0), default_timezone="UTC")
    at = datetime(2025, 3, 1, 13, 0, tzinfo=UTC)

    assert quiet_until(person("Nowhere/Land"), Channel.PHONE, at, policy) == datetime(
        2025, 3, 1, 14, 0, tzinfo=UTC
    )


def test_cap_counters_use_the_local_day_and_iso_week() -> None:
    # 23:30 UTC on Sunday 2 March is already Monday 3 March (week 10) in Madrid.
    at = datetime(2025, 3, 2, 23, 30, tzinfo=UTC)

    counters = cap_counters(person("Europe/Madrid"), Channel.PHONE, at, POLICY)

    keys = [c.key for c in counters]
    assert keys == [
        "campaign:cap:p-1:all:d2025-03-03",
        "campaign:cap:p-1:all:w2025-10",
        "campaign:cap:p-1:phone:d2025-03-03",
        "campaign:cap:p-1:phone:w2025-10",
    ]
    assert [c.limit for c in counters] == [1, 3, 1, 1]


def request(decision_id: str, *alternatives: list[CapCounter]) -> ContactRequest:
    return ContactRequest(decision_id, list(alternatives))


async def test_the_memory_ledger_grants_under_the_caps_and_remembers_its_answers() -> None:
    ledger = MemoryContactLedger()
    day = CapCounter("d", 2, 60, "all per day (2)")
    phone = CapCounter("ph", 1, 60, "phone per day (1)")
    email = CapCounter("em", 5, 60, "email per day (5)")

    first = await ledger.reserve([request("m1", [day, phone], [day, email])])
    second = await ledger.reserve([request("m2", [day, phone], [day, email])])
    third = await ledger.reserve([request("m3", [day, phone], [day, email])])
    replay = await ledger.reserve([request("m2", [day, phone], [day, email])])

    assert first[0].granted == 0
    assert second[0].granted == 1
    assert second[0].blocked == ("phone per day (1)",)
    assert third[0].granted is None
    assert third[0].blocked == ("all per day (2)", "all per day (2)")
    assert replay[0].granted == 1  # the same answer, nothing counted twice


async def test_the_memory_ledger_holds_its_caps_under_concurrent_callers() -> None:
    ledger = MemoryContactLedger()
    cap = CapCounter("all", 3, 60, "all per day (3)")

    answers = await asyncio.gather(*[ledger.reserve([request(f"m{n}", [cap])]) for n in range(50)])

    assert sum(a[0].granted == 0 for a in answers) == 3
