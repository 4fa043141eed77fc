"""Normalisation of identifiers and codes before validation, so equal values compare equal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import phonenumbers

from clientela.ingest.domain.policy import PhoneCheck
from clientela.shared.contracts import FieldError


class InvalidPhoneError(ValueError):
    """A phone identifier that cannot be read as a telephone number."""


def normalise_email(value: str) -> str:
    """Return the email trimmed and lowercased."""
    return value.strip().lower()


def normalise_phone(value: str, region: str, check: PhoneCheck = "possible") -> str:
    """Return the phone in E.164, reading national numbers in the given region."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneError("not a phone number") from exc
    if check == "valid" and not phonenumbers.is_valid_number(number):
        raise InvalidPhoneError(f"not a valid phone number (default region {region})")
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhoneError(f"not a possible phone number (default region {region})")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def normalise_currency(value: str) -> str:
    """Return the currency code trimmed and upper-cased."""
    return value.strip().upper()


def normalise_touchpoint_fields(
    payload: Mapping[str, Any], region: str, check: PhoneCheck = "possible"
) -> tuple[dict[str, Any], list[FieldError]]:
    """Return a normalised copy of a raw touchpoint and the errors normalisation found.

    Values of the wrong type are left as they are: validation reports them with a better reason.
    """
    out = dict(payload)
    errors: list[FieldError] = []
    identifiers = out.get("identifiers")
    if isinstance(identifiers, Mapping):
        identifiers = out["identifiers"] = dict(identifiers)
        email = identifiers.get("email")
        if isinstance(email, str):
            identifiers["email"] = normalise_email(email)
        phone = identifiers.get("phone")
        if isinstance(phone, str):
            try:
                identifiers["phone"] = normalise_phone(phone, region, check)
            except InvalidPhoneError as exc:
                errors.append(FieldError(path="identifiers.phone", reason=str(exc)))
    for field in ("sale", "cost"):
        money = out.get(field)
        if isinstance(money, Mapping) and isinstance(money.get("currency"), str):
            out[field] = {**money, "currency": normalise_currency(money["currency"])}
    return out, errors
