"""Plain words for what the services return: how a touchpoint went, what a decision means."""

from __future__ import annotations

from clientela.shared.contracts import Touchpoint

CHANNEL_WORDS = {
    "phone": "phone",
    "email": "e-mail",
    "web": "web site",
    "branch": "branch",
    "sms": "SMS",
    "mail": "post",
    "app": "app",
    "chat": "chat",
}
OUTCOME_WORDS = {
    "sent": "sent",
    "control": "held back (control group)",
    "suppressed": "not sent",
    "deferred": "waiting for the morning",
}


def how(touchpoint: Touchpoint) -> str:
    """Describe the details of a touchpoint in a few words (never an identifier)."""
    parts: list[str] = []
    if touchpoint.sale is not None:
        sale = touchpoint.sale
        items = sum(int(i.quantity) for i in sale.items) if sale.items else 0
        parts.append(f"bought for {sale.amount} {sale.currency}")
        if items:
            categories = sorted({i.category for i in sale.items if i.category})
            parts.append(f"{items} item{'s' if items != 1 else ''}")
            if categories:
                parts.append(", ".join(categories))
    if touchpoint.call is not None:
        minutes, seconds = divmod(touchpoint.call.duration_seconds, 60)
        parts.append(
            f"call of {minutes}m{seconds:02d}s, {touchpoint.call.outcome.value.replace('_', ' ')}"
        )
        if touchpoint.call.reason:
            parts.append(touchpoint.call.reason)
    if touchpoint.email is not None:
        e = touchpoint.email
        flags = [
            name
            for name, on in (
                ("opened", e.opened),
                ("clicked", e.clicked),
                ("bounced", e.bounced),
                ("unsubscribed", e.unsubscribed),
            )
            if on
        ]
        parts.append(", ".join(flags) if flags else "not opened")
        if e.campaign_message_id:
            parts.append("answering a campaign message")
    if touchpoint.web_visit is not None:
        views = touchpoint.web_visit.page_views
        parts.append(f"{views} page view{'s' if views != 1 else ''}")
    if touchpoint.branch_visit is not None:
        b = touchpoint.branch_visit
        parts.append(f"branch {b.branch_id}" + (f", {b.purpose}" if b.purpose else ""))
    parts.extend(
        f"{CHANNEL_WORDS.get(c.channel, c.channel)} consent: {c.status.replace('_', ' ')}"
        for c in touchpoint.consent
    )
    return "; ".join(parts) or touchpoint.kind.value.replace("_", " ")


def who(touchpoint: Touchpoint) -> str:
    """Describe who handled a touchpoint: the rep and their role, or self-service."""
    agent = touchpoint.agent
    if agent is None:
        return "self-service" if touchpoint.direction == "inbound" else "automated"
    role = (agent.role or "rep").replace("_", " ")
    team = f", {agent.team}" if agent.team else ""
    return f"{agent.agent_id} ({role}{team})"


def outcome(outcome: str, responded: bool, converted: bool) -> str:
    """Describe what became of a campaign decision."""
    words = OUTCOME_WORDS.get(outcome, outcome)
    if converted:
        return f"{words}; bought afterwards"
    if responded:
        return f"{words}; responded"
    return words
