"""Reasons as plain data: thousands are built per second on the streaming path.

A reason is a dict shaped like the contract's `Reason` (code, value, detail); it is encoded
straight to JSON, and parsed into `Reason` only where a person reads it (the HTTP API).
"""

from __future__ import annotations

from typing import TypedDict


class ReasonData(TypedDict):
    """One reason behind a score, shaped like the contract's Reason."""

    code: str
    value: float | int | str | None
    detail: str


def reason(code: str, value: float | int | str | None = None, detail: str = "") -> ReasonData:
    """Return a reason (share instances freely, but never mutate one)."""
    return {"code": code, "value": value, "detail": detail}
