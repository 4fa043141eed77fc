"""Unit tests of the pure profile model: identity, aggregates, lifecycle, traits, consent."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from clientela.profile.domain.identity import (
    TouchpointIdentity,
    identifier_keys,
    normalize_identifier,
    resolve,
)
from clientela.profile.domain.policy import ProfilePolicy
from clientela.profile.domain.profile import Profile
from clientela.shared.contracts import Channel, ConsentStatus, Identifiers, Lifecycle

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _fold(events, policy: ProfilePolicy) -> Profile:
    profile = Profile.new("p-1", NOW, policy)
    for event in events:
        profile.record(event, policy)
    profile.mark_changed(NOW, policy)
    return profile


def _history(tp):
    return [
        tp(kind="web_visit", at="2024-01-05T09:00:00+00:00", traits={"city": "Lyon"}),
        tp(kind="sale", channel="web", amount="100.00", at="2024-02-10T12:00:00+00:00"),
        tp(
            kind="sale",
            channel="branch",
            amount="50.00",
            currency="USD",
            at="2024-03-01T23:30:00-02:00",
        ),
        tp(
            kind="sale",
            channel="web",
            amount="7000",
            currency="JPY",
            at="2024-03-02T08:00:00+00:00",
        ),
        tp(
            kind="phone_call",
            channel="phone",
            direction="outbound",
            at="2024-04-01T10:00:00+00:00",
            cost=("3.50", "EUR"),
            consent={"phone": "opted_in"},
        ),
        tp(
            kind="email",
            channel="email",
            direction="outbound",
            at="2024-04-02T10:00:00+00:00",
            traits={"city": "Paris"},
            consent={"email": "opted_in"},
        ),
        tp(kind="email", channel="email", at="2024-05-02T10:00:00+00:00", unsubscribed=True),
        tp(
            kind="branch_visit",
            channel="branch",
            at="2023-12-24T16:00:00+01:00",
            cost=("20", "GBP"),
            traits={"city": "Nice", "segment": "retail"},
        ),
    ]


def test_aggregates_do_not_depend_on_arrival_order(tp, policy) -> None:
    events = _history(tp)
    reference = _fold(events, policy)
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    for order in (list(reversed(events)), shuffled):
        other = _fold(order, policy)
        assert other.tally.to_contract() == reference.tally.to_contract()
        assert other.changed() == reference.changed()
        assert other.to_state() == reference.to_state()


def test_aggregates_count_and_convert_money(tp, policy) -> None:
    agg = _fold(_history(tp), policy).tally.to_contract()
    assert agg.touchpoint_count == 8
    assert agg.counts_by_kind == {
        "branch_visit": 1,
        "email": 2,
        "phone_call": 1,
        "sale": 3,
        "web_visit": 1,
    }
    assert agg.counts_by_channel == {"branch": 2, "email": 2, "phone": 1, "web": 3}
    assert (agg.inbound_count, agg.outbound_count) == (6, 2)
    assert agg.purchase_count == 3
    # 23:30 at -02:00 is 01:30 UTC on 2 March, the same UTC day as the JPY sale.
    assert agg.purchase_days == 2
    assert agg.first_purchase_at == datetime(2024, 2, 10, 12, tzinfo=UTC)
    assert agg.last_purchase_at == datetime(2024, 3, 2, 8, tzinfo=UTC)
    assert agg.first_seen_at == datetime(2023, 12, 24, 15, tzinfo=UTC)
    assert agg.last_seen_at == datetime(2024, 5, 2, 10, tzinfo=UTC)
    assert agg.currency == "EUR"
    assert agg.total_spend == Decimal("145.0000")  # 100 EUR + 50 USD * 0.9
    assert agg.average_order_value == Decimal("72.5000")  # over the two converted sales
    assert agg.spend_by_currency == {"JPY": Decimal("7000.0000")}
    # web 0.01 x3 + branch sale 15 + stated 3.50 EUR + email 0.02 x2; the GBP cost has no rate.
    assert agg.cost_to_serve == Decimal("18.5700")


def test_money_is_rounded_per_conversion(tp) -> None:
    policy = ProfilePolicy(fx_rates={"USD": Decimal("0.923456")})
    agg = _fold([tp(kind="sale", amount="10.01", currency="USD")], policy).tally.to_contract()
    assert agg.total_spend == Decimal("9.2438")
    assert agg.average_order_value == Decimal("9.2438")


def test_lifecycle_follows_the_last_sale(tp, policy) -> None:
    prospect = _fold([tp(kind="web_visit")], policy)
    assert prospect.lifecycle(NOW, policy) is Lifecycle.PROSPECT
    recent = _fold([tp(kind="sale", at=NOW - timedelta(days=365))], policy)
    assert recent.lifecycle(NOW, policy) is Lifecycle.CUSTOMER
    assert recent.changed().lifecycle is Lifecycle.CUSTOMER
    old = _fold([tp(kind="sale", at=NOW - timedelta(days=366))], policy)
    assert old.lifecycle(NOW, policy) is Lifecycle.LAPSED
    short = ProfilePolicy(lapse_after=timedelta(days=30))
    assert recent.lifecycle(NOW, short) is Lifecycle.LAPSED


def test_consent_latest_change_wins_in_any_order(tp, policy) -> None:
    events = [
        tp(
            at="2024-01-01T00:00:00+00:00",
            consent={"email": "opted_in", "sms": "opted_in"},
            source="crm",
        ),
        tp(at="2024-03-01T00:00:00+00:00", consent={"email": "opted_out"}, source="esp"),
        tp(
            at="2024-02-01T00:00:00+00:00",
            consent={"email": "opted_in", "sms": "opted_out"},
            source="web",
        ),
    ]
    for order in itertools.permutations(events):
        consent = _fold(order, policy).current_consent()
        assert consent[Channel.EMAIL].status is ConsentStatus.OPTED_OUT
        assert consent[Channel.EMAIL].source == "esp"
        assert consent[Channel.EMAIL].updated_at == datetime(2024, 3, 1, tzinfo=UTC)
        assert consent[Channel.SMS].status is ConsentStatus.OPTED_OUT
        assert consent[Channel.SMS].source == "web"


def test_unsubscribe_withdraws_email_consent_unless_overtaken(tp, policy) -> None:
    unsubscribed = tp(
        kind="email", channel="email", at="2024-02-01T00:00:00+00:00", unsubscribed=True
    )
    again = tp(at="2024-03-01T00:00:00+00:00", consent={"email": "opted_in"})
    assert (
        _fold([unsubscribed], policy).current_consent()[Channel.EMAIL].status
        is ConsentStatus.OPTED_OUT
    )
    assert (
        _fold([again, unsubscribed], policy).current_consent()[Channel.EMAIL].status
        is ConsentStatus.OPTED_IN
    )


def test_traits_latest_wins_and_none_clears(tp, policy) -> None:
    events = [
        tp(at="2024-01-01T00:00:00+00:00", traits={"city": "Lyon", "vip": True}),
        tp(at="2024-03-01T00:00:00+00:00", traits={"vip": None}),
        tp(at="2024-02-01T00:00:00+00:00", traits={"city": "Paris", "vip": False}),
    ]
    for order in itertools.permutations(events):
        profile = _fold(order, policy)
        assert profile.current_traits() == {"city": "Paris"}
        assert profile.traits["vip"].stamp.at == datetime(2024, 3, 1, tzinfo=UTC)


def test_reachable_channels_and_identifier_types(tp, policy) -> None:
    profile = _fold([tp(kind="branch_visit", channel="branch")], policy)
    profile.attach_identifier_types(["phone", "email", "loyalty_card", "customer_id"])
    assert profile.reachable_channels() == [
        Channel.EMAIL,
        Channel.SMS,
        Channel.PHONE,
        Channel.BRANCH,
    ]
    assert profile.changed().identifier_types == ["customer_id", "email", "phone", "loyalty_card"]


def test_state_round_trip_keeps_everything(tp, policy) -> None:
    profile = _fold(_history(tp), policy)
    profile.attach_identifier_types(["email"])
    state = profile.to_state()
    back = Profile.from_state(
        profile.profile_id,
        profile.version,
        profile.created_at,
        profile.updated_at,
        profile.stage.value,
        state,
    )
    assert back == profile
    assert back.changed() == profile.changed()


def test_identifier_keys_are_normalised_and_ordered() -> None:
    ids = Identifiers(
        anonymous_id="a-1", email="  Ann@Example.COM ", customer_id="C-9", extra={"loyalty": "L1"}
    )
    assert identifier_keys(ids) == [
        ("customer_id", "C-9"),
        ("email", "ann@example.com"),
        ("anonymous_id", "a-1"),
        ("loyalty", "L1"),
    ]
    assert normalize_identifier("phone", " +33123 ") == "+33123"


def _ids():
    counter = itertools.count(1)
    return lambda: f"new-{next(counter)}"


def test_resolve_creates_attaches_and_prefers_the_strongest_identifier() -> None:
    batch = [
        TouchpointIdentity("e1", [("email", "a@x.io"), ("device_id", "d1")]),
        TouchpointIdentity("e2", [("phone", "+1"), ("anonymous_id", "z")]),
        TouchpointIdentity("e3", [("email", "b@x.io"), ("phone", "+2"), ("device_id", "d9")]),
    ]
    owners = {("email", "b@x.io"): "p-mail", ("phone", "+2"): "p-phone"}
    result = resolve(batch, owners, _ids())
    assert result.profile_of == {"e1": "new-1", "e2": "new-2", "e3": "p-mail"}
    assert result.new_profiles == ["new-1", "new-2"]
    claimed = {(c.id_type, c.id_value): c.profile_id for c in result.claims}
    assert claimed == {
        ("email", "a@x.io"): "new-1",
        ("device_id", "d1"): "new-1",
        ("phone", "+1"): "new-2",
        ("anonymous_id", "z"): "new-2",
        ("device_id", "d9"): "p-mail",
    }
    # The phone stays with its owner: merging the two profiles is a later decision.
    assert [(c.profile_id, c.other_profile_id, c.id_type) for c in result.contested] == [
        ("p-mail", "p-phone", "phone")
    ]


def test_resolve_same_new_person_twice_in_a_batch() -> None:
    batch = [
        TouchpointIdentity("e1", [("anonymous_id", "z")]),
        TouchpointIdentity("e2", [("email", "a@x.io"), ("anonymous_id", "z")]),
        TouchpointIdentity("e3", [("email", "a@x.io")]),
    ]
    result = resolve(batch, {}, _ids())
    assert set(result.profile_of.values()) == {"new-1"}
    assert result.new_profiles == ["new-1"]
    assert len(result.claims) == 2
    assert not result.contested
