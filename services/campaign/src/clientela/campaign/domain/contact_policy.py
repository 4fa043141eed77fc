"""Contact policy: caps per day and week, quiet hours in the person's time zone, cool-down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clientela.campaign.domain.model import Contact
from clientela.shared.contracts import Channel

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class CapLimits:
    """At most `day` contacts per local day and `week` per ISO week (None = no cap)."""

    day: int | None = None
    week: int | None = None


DEFAULT_CHANNEL_CAPS: Mapping[Channel, CapLimits] = {
    Channel.PHONE: CapLimits(day=1, week=1),
    Channel.BRANCH: CapLimits(day=1, week=1),
    Channel.SMS: CapLimits(day=1, week=2),
    Channel.EMAIL: CapLimits(day=1, week=3),
    Channel.MAIL: CapLimits(day=1, week=1),
}
# Channels that interrupt a person (a ringing phone, a buzzing message, a visit invitation
# from an agent); email, post and the web wait in an inbox until the person looks.
DEFAULT_QUIET_CHANNELS = frozenset({Channel.PHONE, Channel.SMS, Channel.APP, Channel.BRANCH})


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """How often and when a person may be contacted."""

    global_caps: CapLimits = CapLimits(day=1, week=3)
    channel_caps: Mapping[Channel, CapLimits] = field(
        default_factory=lambda: dict(DEFAULT_CHANNEL_CAPS)
    )
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    quiet_channels: frozenset[Channel] = DEFAULT_QUIET_CHANNELS
    default_timezone: str = "UTC"
    timezone_trait: str = "timezone"
    cooldown_days: float = 30.0


@dataclass(frozen=True, slots=True)
class CapCounter:
    """One counter a contact must fit under: its key, its limit and how long it lives."""

    key: str
    limit: int
    ttl_s: int
    label: str


def zone_of(contact: Contact, policy: ContactPolicy) -> ZoneInfo:
    """Return the person's time zone (trait), else the configured default."""
    name = contact.trait(policy.timezone_trait)
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # an unknown zone name falls back to the default rather than blocking
    return ZoneInfo(policy.default_timezone)


def _in_quiet(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(
    contact: Contact, channel: Channel, now: datetime, policy: ContactPolicy
) -> datetime | None:
    """Return when quiet hours end for this person and channel, or None if not quiet now."""
    if channel not in policy.quiet_channels:
        return None
    local = now.astimezone(zone_of(contact, policy))
    if not _in_quiet(local.time().replace(tzinfo=None), policy.quiet_start, policy.quiet_end):
        return None
    end = local.replace(
        hour=policy.quiet_end.hour,
        minute=policy.quiet_end.minute,
        second=0,
        microsecond=0,
    )
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(now.tzinfo)


def cooldown_until(contact: Contact, policy: ContactPolicy) -> datetime | None:
    """Return the end of the cool-down after the last opt-out or complaint, if any."""
    marks = [t for t in (contact.opted_out_at, contact.complained_at) if t is not None]
    if not marks:
        return None
    return max(marks) + timedelta(days=policy.cooldown_days)


def cap_counters(
    contact: Contact, channel: Channel, now: datetime, policy: ContactPolicy
) -> list[CapCounter]:
    """Return the counters a contact on this channel counts against (local day and week)."""
    local = now.astimezone(zone_of(contact, policy))
    year, week, _ = local.isocalendar()
    day_tag, week_tag = f"d{local.date().isoformat()}", f"w{year}-{week:02d}"
    counters: list[CapCounter] = []
    scopes = [("all", policy.global_caps), (channel.value, policy.channel_caps.get(channel))]
    for scope, limits in scopes:
        if limits is None:
            continue
        if limits.day is not None:
            counters.append(
                CapCounter(
                    f"campaign:cap:{contact.profile_id}:{scope}:{day_tag}",
                    limits.day,
                    2 * DAY_S,
                    f"{scope} per day ({limits.day})",
                )
            )
        if limits.week is not None:
            counters.append(
                CapCounter(
                    f"campaign:cap:{contact.profile_id}:{scope}:{week_tag}",
                    limits.week,
                    8 * DAY_S,
                    f"{scope} per week ({limits.week})",
                )
            )
    return counters


def cap_keys(profile_id: str, now: datetime) -> list[str]:
    """Return every counter key a person may have now, whatever the zone, scope or period.

    Counters live at most 8 days; day tags within 3 days and week tags within 9 days of now
    (in any time zone) cover every counter that can still exist.
    """
    scopes = ["all", *(channel.value for channel in Channel)]
    days = {(now + timedelta(days=d)).date() for d in range(-3, 2)}
    weeks = {(now + timedelta(days=d)).isocalendar()[:2] for d in range(-9, 2)}
    tags = [f"d{day.isoformat()}" for day in sorted(days)]
    tags += [f"w{year}-{week:02d}" for year, week in sorted(weeks)]
    return [f"campaign:cap:{profile_id}:{scope}:{tag}" for scope in scopes for tag in tags]
