"""Unit tests of survivorship, support cases, categories, channel preference, merges, splits."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from clientela.profile.domain.identity import IdentityRules, TouchpointIdentity
from clientela.profile.domain.policy import ProfilePolicy, Survivorship, TraitRules
from clientela.profile.domain.profile import Profile
from clientela.profile.domain.split import plan_split
from clientela.shared.contracts import Channel, TouchpointRecorded

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _fold(events, policy: ProfilePolicy, profile_id: str = "p-1") -> Profile:
    profile = Profile.new(profile_id, NOW, policy)
    for event in events:
        profile.record(event, policy)
    return profile


def _trait_events(tp):
    return [
        tp(at="2024-01-01T00:00:00Z", traits={"city": "Lyon"}, source="crm"),
        tp(at="2024-02-01T00:00:00Z", traits={"city": "Lyon"}, source="web"),
        tp(at="2024-03-01T00:00:00Z", traits={"city": "Paris"}, source="web"),
        tp(at="2024-04-01T00:00:00Z", traits={"city": "Nice"}, source="pos"),
    ]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (TraitRules(), "Nice"),
        (TraitRules(default=Survivorship.MOST_FREQUENT), "Lyon"),
        (
            TraitRules(per_trait={"city": Survivorship.SOURCE_PRIORITY}, source_priority=("crm",)),
            "Lyon",
        ),
        (
            TraitRules(default=Survivorship.SOURCE_PRIORITY, source_priority=("web", "crm")),
            "Paris",
        ),
    ],
)
def test_survivorship_rules(tp, rules: TraitRules, expected: str) -> None:
    policy = ProfilePolicy(traits=rules)
    for order in itertools.permutations(_trait_events(tp)):
        assert _fold(order, policy).current_traits(rules) == {"city": expected}


def _support(tp, case_id: str, status: str, at: str):
    event = tp(kind="support_case", channel="chat", direction="outbound", at=at)
    data = event.data.model_copy(update={"properties": {"case_id": case_id, "status": status}})
    return event.model_copy(update={"data": data})


def test_cases_categories_and_channel_preference(tp, policy) -> None:
    sale = tp(kind="sale", channel="branch", direction="outbound", amount="20")
    items = [
        {"sku": "a", "category": "shoes"},
        {"sku": "b", "category": "shoes"},
        {"sku": "c", "category": "hats"},
        {"sku": "d"},
    ]
    raw = sale.model_dump(mode="json")
    raw["data"]["sale"]["items"] = items
    events = [
        TouchpointRecorded.model_validate(raw),
        _support(tp, "K-1", "open", "2024-01-01T00:00:00Z"),
        _support(tp, "K-1", "resolved", "2024-01-03T00:00:00Z"),
        _support(tp, "K-2", "open", "2024-02-01T00:00:00Z"),
        tp(kind="web_visit", channel="web", at="2023-06-01T00:00:00Z"),
        tp(kind="web_visit", channel="web", at="2023-06-02T00:00:00Z"),
        tp(kind="web_visit", channel="web", at="2023-06-03T00:00:00Z"),
        tp(kind="phone_call", channel="phone", at="2024-05-01T00:00:00Z"),
        tp(kind="phone_call", channel="phone", direction="outbound", at="2024-05-02T00:00:00Z"),
    ]
    reference = None
    for _ in range(5):
        random.Random(3).shuffle(events)
        agg = _fold(events, policy).tally.to_contract(policy)
        reference = reference or agg
        assert agg == reference
    assert reference is not None
    assert (reference.open_support_cases, reference.closed_support_cases) == (1, 1)
    assert reference.purchase_categories == {"hats": 1, "shoes": 2}
    # Three web visits a year ago weigh less than one phone call last month (90-day half-life).
    pref = reference.inbound_channel_preference
    assert pref["phone"] > pref["web"]
    assert reference.preferred_inbound_channel is Channel.PHONE
    slow = ProfilePolicy(preference_half_life=timedelta(days=3650))
    assert _fold(events, slow).tally.to_contract(slow).preferred_inbound_channel is Channel.WEB


def test_absorbing_a_profile_equals_folding_all_its_touchpoints(tp, policy) -> None:
    rng = random.Random(5)
    kinds = [("sale", "web"), ("email", "email"), ("phone_call", "phone"), ("web_visit", "web")]
    events = []
    for _n in range(30):
        kind, channel = rng.choice(kinds)
        events.append(
            tp(
                kind=kind,
                channel=channel,
                at=NOW - timedelta(days=rng.randint(0, 400)),
                traits={"city": rng.choice(["a", "b"])},
                consent={"email": rng.choice(["opted_in", "opted_out"])},
                amount=str(rng.randint(1, 50)) if kind == "sale" else None,
                source=rng.choice(["crm", "web"]),
            )
        )
    whole = _fold(events, policy)
    left = _fold(events[:13], policy)
    right = _fold(events[13:], policy, "p-2")
    left.identifier_counts = {"email": 1}
    right.identifier_counts = {"email": 1, "phone": 1}
    left.absorb(right)
    whole.identifier_counts = {"email": 2, "phone": 1}
    assert left.to_state() == whole.to_state()
    assert left.tally.total_spend == whole.tally.total_spend > Decimal(0)


def test_state_round_trip_keeps_new_figures_and_upcasts_layout_1(tp, policy) -> None:
    profile = _fold([_support(tp, "K", "open", "2024-01-01T00:00:00Z"), *_trait_events(tp)], policy)
    back = Profile.from_state("p-1", 1, NOW, NOW, "prospect", profile.to_state())
    assert back.to_state() == profile.to_state()
    old = {
        "schema": 1,
        "identifier_types": ["email"],
        "traits": {"city": {"value": "Oslo", "at": "2024-01-01T00:00:00+00:00", "event_id": "e"}},
        "consent": {},
        "aggregates": profile.tally.to_state(),
    }
    upcast = Profile.from_state("p-1", 1, NOW, NOW, "prospect", old)
    assert upcast.identifier_counts == {"email": 1}
    assert upcast.current_traits() == {"city": "Oslo"}


def test_split_plan_follows_the_strongest_identifier() -> None:
    rules = IdentityRules()
    ann_email, bob_phone = ("email", "ann@x.io"), ("phone", "+1")
    ann_anon, bob_anon = ("anonymous_id", "a"), ("anonymous_id", "b")
    touchpoints = [
        TouchpointIdentity("t1", [ann_email, ann_anon]),
        TouchpointIdentity("t2", [ann_anon]),
        TouchpointIdentity("t3", [bob_phone, bob_anon]),
        TouchpointIdentity("t4", [bob_anon]),
        TouchpointIdentity("link", [ann_email, bob_phone]),
    ]
    owned = [ann_email, bob_phone, ann_anon, bob_anon]
    plan = plan_split(touchpoints, owned, [bob_phone], rules)
    assert plan.identifiers == {bob_phone, bob_anon}
    assert plan.event_ids == {"t3", "t4"}


def test_events_built_without_validation_match_the_contract(tp, policy) -> None:
    from clientela.profile.application.handle_touchpoints import profile_changed
    from clientela.profile.application.ports import ReceivedTouchpoint
    from clientela.shared.codec import encode_event
    from clientela.shared.contracts import ProfileChangedEvent

    events = [
        *_trait_events(tp),
        _support(tp, "K", "open", "2024-01-01T00:00:00Z"),
        tp(kind="sale", amount="12.5", consent={"email": "opted_in"}),
    ]
    profile = _fold(events, policy)
    profile.attach_identifier_types(["email", "phone"])
    profile.mark_changed(NOW, policy)
    out = profile_changed(profile, [ReceivedTouchpoint.of(events[-1], 5)], NOW, "profile", policy)
    decoded = ProfileChangedEvent.model_validate_json(out.value)
    assert decoded.event_id == out.event_id
    assert decoded.causation_id == events[-1].event_id
    assert decoded.data == profile.changed(policy)
    # The model built without validation serialises to the same event the JSON carries.
    rebuilt = ProfileChangedEvent.model_validate_json(
        encode_event(decoded.model_copy(update={"data": profile.changed(policy)}))
    )
    assert rebuilt == decoded
    assert decoded.data.aggregates.first_purchase_amount == Decimal("12.5000")


def test_first_purchase_amount_is_the_earliest_sale_in_any_order(tp, policy) -> None:
    sales = [
        tp(kind="sale", amount="30", at="2024-03-01T00:00:00Z"),
        tp(kind="sale", amount="10", currency="USD", at="2024-01-01T00:00:00Z"),
        tp(kind="sale", amount="50", at="2024-05-01T00:00:00Z"),
        tp(kind="web_visit", at="2023-01-01T00:00:00Z"),
    ]
    for order in itertools.permutations(sales):
        agg = _fold(order, policy).tally.to_contract(policy)
        # The January sale is in USD at 0.9: 9.0000 in the base currency.
        assert agg.first_purchase_amount == Decimal("9.0000")
        assert agg.total_spend - agg.first_purchase_amount == Decimal("80.0000")
    # Merged, the earlier sale of either side wins.
    left, right = _fold(sales[2:], policy), _fold(sales[:2], policy, "p-2")
    left.absorb(right)
    assert left.tally.to_contract(policy).first_purchase_amount == Decimal("9.0000")
    assert _fold([], policy).tally.to_contract(policy).first_purchase_amount == Decimal(0)


def test_an_unpriced_first_sale_counts_zero(tp, policy) -> None:
    events = [
        tp(kind="sale", amount="10", currency="GBP", at="2024-01-01T00:00:00Z"),
        tp(kind="sale", amount="20", at="2024-02-01T00:00:00Z"),
    ]
    agg = _fold(events, policy).tally.to_contract(policy)
    # GBP has no rate: the sale is neither in total_spend nor in first_purchase_amount.
    assert (agg.first_purchase_amount, agg.total_spend) == (Decimal(0), Decimal("20.0000"))


def test_a_layout_2_snapshot_keeps_its_first_sale_time_until_rebuilt(tp, policy) -> None:
    profile = _fold([tp(kind="sale", amount="40", at="2024-03-01T00:00:00Z")], policy)
    state = profile.to_state()
    state["schema"] = 2
    del state["aggregates"]["first_sale"]
    stored = Profile.from_state("p-1", 1, NOW, NOW, "customer", json.dumps(state))
    # The amount of a sale folded before the figure existed is unknown: 0, not a later sale.
    stored.record(tp(kind="sale", amount="70", at="2024-04-01T00:00:00Z"), policy)
    assert stored.tally.to_contract(policy).first_purchase_amount == Decimal(0)
    stored.record(tp(kind="sale", amount="5", at="2024-02-01T00:00:00Z"), policy)
    assert stored.tally.to_contract(policy).first_purchase_amount == Decimal("5.0000")


def test_snapshot_json_round_trip_and_sorted_form(tp, policy) -> None:
    events = [*_trait_events(tp), tp(kind="sale", amount="3", consent={"sms": "opted_in"})]
    profile = _fold(events, policy)
    back = Profile.from_state("p-1", 0, NOW, NOW, "prospect", profile.to_json())
    assert back == profile
    assert back.to_json_sorted() == profile.to_json_sorted()
    assert json.loads(profile.to_json_sorted()) == profile.to_state()


def _generated_touchpoints(tp, rng: random.Random, count: int) -> list[TouchpointRecorded]:
    kinds = [
        ("web_visit", "web", "inbound"),
        ("email", "email", "outbound"),
        ("sale", "web", "inbound"),
        ("phone_call", "phone", "inbound"),
        ("branch_visit", "branch", "inbound"),
        ("support_case", "chat", "inbound"),
    ]
    identifiers = {
        "email": f"p{rng.randrange(10**6)}@x.io",
        "phone": f"+4420{rng.randrange(10**7):07d}",
        "customer_id": f"c-{rng.randrange(10**6)}",
    }
    found = []
    for _ in range(count):
        kind, channel, direction = rng.choice(kinds)
        picked = dict(rng.sample(sorted(identifiers.items()), rng.randint(1, 3)))
        extra: dict = {}
        if rng.random() < 0.3:
            extra["traits"] = {
                rng.choice(["city", "tier", "age", "vip"]): rng.choice(
                    ["Lyon", 3, 2.5, True, None, "Oslo"]
                )
            }
        if rng.random() < 0.3:
            extra["consent"] = {
                rng.choice(["email", "sms", "phone"]): rng.choice(["opted_in", "opted_out"])
            }
        if kind == "sale":
            extra["amount"] = f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}"
            extra["currency"] = rng.choice(["EUR", "EUR", "USD", "GBP"])
        if rng.random() < 0.2:
            extra["cost"] = (f"{rng.randint(0, 9)}.{rng.randint(0, 999):03d}", "USD")
        event = tp(
            kind=kind,
            channel=channel,
            direction=direction,
            at=NOW - timedelta(days=rng.randint(0, 900), seconds=rng.randint(0, 86_399)),
            unsubscribed=kind == "email" and rng.random() < 0.2,
            source=rng.choice(["crm", "web", "pos"]),
            **extra,
            **picked,
        )
        if kind == "support_case":
            case = {"case_id": f"K{rng.randint(1, 3)}", "status": rng.choice(["open", "closed"])}
            data = event.data.model_copy(update={"properties": case})
            event = event.model_copy(update={"data": data})
        found.append(event)
    return found


def _expected_changed(profile: Profile, policy: ProfilePolicy) -> dict:
    """Return ProfileChanged's fields computed from the domain state, not from `published`."""
    tally = profile.tally
    q = Decimal("0.0001")
    open_cases = sum(1 for case in tally.cases.values() if case.open())
    preference = tally.channel_preference(policy)
    first = tally.first_sale
    channels = [c.value for c in Channel]
    return {
        "profile_id": profile.profile_id,
        "version": profile.version,
        "lifecycle": profile.stage,
        "created_at": profile.created_at,
        "identifier_types": profile.sorted_identifier_types(policy),
        "reachable_channels": profile.reachable_channels(),
        "consent": {
            c: {"status": e.status, "updated_at": e.at, "source": e.source}
            for c, e in profile.consent.items()
        },
        "traits": profile.current_traits(policy.traits),
        "aggregates": {
            "first_seen_at": tally.first_seen_at,
            "last_seen_at": tally.last_seen_at,
            "touchpoint_count": tally.touchpoint_count,
            "counts_by_kind": tally.counts_by_kind,
            "counts_by_channel": tally.counts_by_channel,
            "inbound_count": tally.inbound_count,
            "outbound_count": tally.outbound_count,
            "purchase_count": tally.purchase_count,
            "purchase_days": len(tally.purchase_days),
            "first_purchase_at": tally.first_purchase_at,
            "last_purchase_at": tally.last_purchase_at,
            "currency": tally.currency,
            "total_spend": tally.total_spend.quantize(q),
            "first_purchase_amount": (
                first.amount.quantize(q) if first and first.amount is not None else 0
            ),
            "average_order_value": (
                (tally.total_spend / tally.priced_purchase_count).quantize(q)
                if tally.priced_purchase_count
                else 0
            ),
            "spend_by_currency": {c: a.quantize(q) for c, a in tally.spend_by_currency.items()},
            "cost_to_serve": tally.cost_to_serve.quantize(q),
            "open_support_cases": open_cases,
            "closed_support_cases": len(tally.cases) - open_cases,
            "purchase_categories": tally.categories,
            "inbound_channel_preference": preference,
            "preferred_inbound_channel": (
                min(preference, key=lambda c: (-preference[c], channels.index(c)))
                if preference
                else None
            ),
        },
    }


def test_profile_changed_bytes_decode_as_the_contract_on_generated_profiles(tp, policy) -> None:
    from clientela.profile.application.handle_touchpoints import profile_changed
    from clientela.profile.application.ports import ReceivedTouchpoint
    from clientela.shared.codec import encode_event
    from clientela.shared.contracts import ProfileChangedEvent

    rng = random.Random(16)
    for index in range(150):
        events = _generated_touchpoints(tp, rng, rng.randint(1, 12))
        profile = _fold(events, policy, f"p-{index}")
        profile.attach_identifier_types(rng.sample(["email", "phone", "customer_id"], 2))
        profile.mark_changed(NOW, policy)
        causes = [ReceivedTouchpoint.of(e, rng.randint(1, 10**12)) for e in events[-3:]]
        out = profile_changed(profile, causes, NOW, "profile", policy)
        # What the pydantic contract itself builds and writes for this profile, validated.
        reference = ProfileChangedEvent.model_validate(
            {
                "event_id": out.event_id,
                "occurred_at": NOW,
                "source": "profile",
                "correlation_id": events[-1].event_id,
                "causation_id": events[-1].event_id,
                "data": _expected_changed(profile, policy),
            }
        )
        assert ProfileChangedEvent.model_validate_json(out.value) == reference
        assert json.loads(out.value) == json.loads(encode_event(reference))
        assert reference.data == profile.changed(policy)
        assert out.accepted_at_ms == min(c.accepted_at_ms for c in causes)
        assert out.linked_causes == tuple(c.event.event_id for c in causes[:-1])
