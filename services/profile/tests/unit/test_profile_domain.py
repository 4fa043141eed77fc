"""Unit tests of the pure profile model: identity, aggregates, lifecycle, traits, consent."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from clientela.profile.domain.identity import (
    IdentityRules,
    ProfileFacts,
    TouchpointIdentity,
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
        assert other.tally.to_contract(policy) == reference.tally.to_contract(policy)
        assert other.changed() == reference.changed()
        assert other.to_state() == reference.to_state()


def test_aggregates_count_and_convert_money(tp, policy) -> None:
    agg = _fold(_history(tp), policy).tally.to_contract(policy)
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
    agg = _fold([tp(kind="sale", amount="10.01", currency="USD")], policy).tally.to_contract(policy)
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
    rules = IdentityRules(default_region="FR")
    ids = Identifiers(
        anonymous_id="a-1", email="  Ann@Example.COM ", customer_id="C-9", extra={"loyalty": "L1"}
    )
    assert rules.keys(ids) == [
        ("customer_id", "C-9"),
        ("email", "ann@example.com"),
        ("anonymous_id", "a-1"),
        ("loyalty", "L1"),
    ]
    assert rules.normalize("phone", " +33123 ") == "+33123"
    assert rules.normalize("phone", "06 12 34 56 78") == "+33612345678"
    assert rules.normalize("phone", "+33 6 12 34 56 78") == "+33612345678"


def _ids():
    counter = itertools.count(1)
    return lambda: f"new-{next(counter)}"


OLD = datetime(2020, 1, 1, tzinfo=UTC)


def _facts(**counts_by_profile: dict[str, int]) -> dict[str, ProfileFacts]:
    return {
        pid: ProfileFacts(OLD + timedelta(days=i), dict(counts))
        for i, (pid, counts) in enumerate(counts_by_profile.items())
    }


def test_resolve_creates_attaches_and_merges_into_the_older_profile() -> None:
    rules = IdentityRules()
    batch = [
        TouchpointIdentity("e1", [("email", "a@x.io"), ("device_id", "d1")]),
        TouchpointIdentity("e2", [("phone", "+1"), ("anonymous_id", "z")]),
        TouchpointIdentity("e3", [("email", "b@x.io"), ("phone", "+2"), ("device_id", "d9")]),
    ]
    owners = {("email", "b@x.io"): "p-mail", ("phone", "+2"): "p-phone"}
    facts = _facts(**{"p-phone": {"phone": 1}, "p-mail": {"email": 1}})
    result = resolve(batch, owners, facts, rules, _ids(), NOW)
    # p-phone is older: the email's profile merges into it.
    assert result.profile_of == {"e1": "new-1", "e2": "new-2", "e3": "p-phone"}
    assert result.new_profiles == ["new-1", "new-2"]
    [merge] = result.merges
    assert (merge.survivor_id, merge.merged_id) == ("p-phone", "p-mail")
    assert merge.rule == "shared_touchpoint:email+phone"
    assert merge.keys == (("email", "b@x.io"), ("phone", "+2"))
    claimed = {(c.id_type, c.id_value): c.profile_id for c in result.claims}
    assert claimed[("device_id", "d9")] == "p-phone"
    assert facts["p-phone"].identifier_counts == {"phone": 1, "email": 1, "device_id": 1}
    assert not result.conflicts


def test_resolve_refuses_a_merge_beyond_a_limit_and_records_it() -> None:
    rules = IdentityRules()
    owners = {("customer_id", "C-1"): "p-1", ("customer_id", "C-2"): "p-2"}
    facts = _facts(**{"p-1": {"customer_id": 1}, "p-2": {"customer_id": 1}})
    batch = [TouchpointIdentity("e1", [("customer_id", "C-2"), ("customer_id", "C-1")])]
    result = resolve(batch, owners, facts, rules, _ids(), NOW)
    assert not result.merges
    [conflict] = result.conflicts
    assert (conflict.profile_id, conflict.other_profile_id) == ("p-2", "p-1")
    assert conflict.reason == "limit:customer_id"
    assert result.profile_of == {"e1": "p-2"}


def test_resolve_refuses_profiles_an_admin_separated() -> None:
    owners = {("email", "a@x.io"): "p-1", ("phone", "+1"): "p-2"}
    facts = _facts(**{"p-1": {"email": 1}, "p-2": {"phone": 1}})
    batch = [TouchpointIdentity("e1", [("email", "a@x.io"), ("phone", "+1")])]
    result = resolve(batch, owners, facts, IdentityRules(), _ids(), NOW, {("p-1", "p-2")})
    assert [c.reason for c in result.conflicts] == ["separated_by_admin"]


def test_limits_cap_identifiers_and_blocked_values_never_link() -> None:
    rules = IdentityRules(limits={"email": 2})
    blocked = Identifiers(email="Test@Test.com", phone="+15555555555", anonymous_id="a")
    assert rules.keys(blocked) == [("anonymous_id", "a")]
    assert rules.is_blocked(("email", "noreply@shop.example"))
    batch = [
        TouchpointIdentity("e1", [("email", "1@x.io")]),
        TouchpointIdentity("e2", [("email", "1@x.io"), ("email", "2@x.io")]),
        TouchpointIdentity("e3", [("email", "1@x.io"), ("email", "3@x.io")]),
    ]
    result = resolve(batch, {}, {}, rules, _ids(), NOW)
    assert [c.id_value for c in result.claims] == ["1@x.io", "2@x.io"]
    assert result.over_limit == 1
    assert set(result.profile_of.values()) == {"new-1"}


def test_resolve_same_new_person_twice_in_a_batch() -> None:
    batch = [
        TouchpointIdentity("e1", [("anonymous_id", "z")]),
        TouchpointIdentity("e2", [("email", "a@x.io"), ("anonymous_id", "z")]),
        TouchpointIdentity("e3", [("email", "a@x.io")]),
    ]
    result = resolve(batch, {}, {}, IdentityRules(), _ids(), NOW)
    assert set(result.profile_of.values()) == {"new-1"}
    assert result.new_profiles == ["new-1"]
    assert len(result.claims) == 2
    assert not result.merges


def test_two_new_profiles_joined_later_in_the_batch_become_one() -> None:
    batch = [
        TouchpointIdentity("e1", [("email", "a@x.io")]),
        TouchpointIdentity("e2", [("phone", "+1")]),
        TouchpointIdentity("e3", [("email", "a@x.io"), ("phone", "+1")]),
    ]
    result = resolve(batch, {}, {}, IdentityRules(), _ids(), NOW)
    assert set(result.profile_of.values()) == {"new-1"}
    assert result.new_profiles == ["new-1"]
    assert {c.profile_id for c in result.claims} == {"new-1"}
