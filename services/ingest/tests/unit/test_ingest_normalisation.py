"""Normalisation of emails, phones and currencies."""

from __future__ import annotations

import pytest

from clientela.ingest.domain.normalisation import (
    InvalidPhoneError,
    normalise_currency,
    normalise_email,
    normalise_phone,
    normalise_touchpoint_fields,
)


def test_email_is_trimmed_and_lowercased() -> None:
    assert normalise_email("  Ada.Lovelace@Example.COM ") == "ada.lovelace@example.com"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(202) 555-0143", "US", "+12025550143"),
        ("+1 650 253 0000", "US", "+16502530000"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+44 20 7946 0958", "US", "+442079460958"),
        # A fictional (drama) range: possible, though not allocated.
        ("+44 1632 960961", "US", "+441632960961"),
    ],
)
def test_phone_becomes_e164(raw: str, region: str, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["not a phone", "12345", "+1"])
def test_unreadable_phone_is_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneError):
        normalise_phone(raw, "US")


def test_strict_check_refuses_unallocated_ranges() -> None:
    with pytest.raises(InvalidPhoneError, match="valid"):
        normalise_phone("+44 1632 960961", "US", "valid")


def test_currency_is_upper_cased() -> None:
    assert normalise_currency(" eur ") == "EUR"


def test_touchpoint_fields_are_normalised_without_touching_the_input() -> None:
    raw = {
        "identifiers": {"email": " A@B.COM", "phone": "202-555-0143"},
        "sale": {"currency": "usd", "amount": 1},
        "cost": {"currency": "gbp", "amount": 1},
    }
    out, errors = normalise_touchpoint_fields(raw, "US")
    assert errors == []
    assert out["identifiers"] == {"email": "a@b.com", "phone": "+12025550143"}
    assert out["sale"]["currency"] == "USD"
    assert out["cost"]["currency"] == "GBP"
    assert raw["identifiers"] == {"email": " A@B.COM", "phone": "202-555-0143"}
    assert raw["sale"] == {"currency": "usd", "amount": 1}


def test_bad_phone_is_a_field_error_and_wrong_types_are_left_for_validation() -> None:
    raw = {"identifiers": {"email": 42, "phone": "call me"}, "sale": "nope"}
    out, errors = normalise_touchpoint_fields(raw, "US")
    assert [(e.path, e.reason) for e in errors] == [("identifiers.phone", "not a phone number")]
    assert out == raw
