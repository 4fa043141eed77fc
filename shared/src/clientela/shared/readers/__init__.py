"""Fast readers of contract records: msgspec on the hot path, the pydantic contract on doubt.

A reader turns a record's value into a light, typed view of its event. The contract (pydantic,
in `clientela.shared.contracts`) stays the source of truth: a reader's msgspec decoding only
*accepts* what it is sure the contract accepts, with the same values; anything else (a
refusal, or a value the two could read differently) is handed to the contract, which either
accepts it (the view is then built from the contract's model) or raises `DecodeError` with
the precise reason a dead letter carries. So a reader refuses exactly what the contract
refuses, and a test holds every reader to that on generated and bad records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from clientela.shared.codec import DecodeError, decode_event
from clientela.shared.contracts import Envelope

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

DEFAULT_MAX_BYTES = 1_048_576


class Reader(Protocol[T_co]):
    """Reads one topic's record values into views of their events."""

    def read(self, value: bytes | None) -> T_co:
        """Return the view of a record's event, or raise DecodeError (the dead letter's reason)."""
        ...


class ContractReader(Generic[T]):
    """A msgspec reader of one contract that defers every doubt to the contract itself."""

    def __init__(
        self,
        contract: type[Envelope],
        view: type[T],
        sure: Callable[[T, bytes], bool],
        *,
        dec_hook: Callable[[type, Any], Any] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.contract = contract
        self.view = view
        self._decoder = msgspec.json.Decoder(view, dec_hook=dec_hook)
        self._dec_hook = dec_hook
        self._sure = sure
        self._max_bytes = max_bytes

    def read(self, value: bytes | None) -> T:
        """Return the view of a record's event, or raise DecodeError as the contract would."""
        if value is not None and len(value) <= self._max_bytes:
            try:
                view = self._decoder.decode(value)
            except (msgspec.DecodeError, UnicodeDecodeError):
                pass  # refused or unsure: the contract decides, and says why
            else:
                if self._sure(view, value):
                    return view
        return self.from_model(decode_event(self.contract, value, self._max_bytes))

    def from_model(self, event: Envelope) -> T:
        """Return the view of an event the contract has already validated."""
        try:
            return msgspec.convert(
                event.model_dump(mode="json"), self.view, dec_hook=self._dec_hook
            )
        except msgspec.ValidationError as exc:
            # The view is looser than the contract everywhere; this is a defect, not bad data.
            raise DecodeError("invalid", f"contract and reader disagree: {exc}") from exc


__all__ = ["DEFAULT_MAX_BYTES", "ContractReader", "DecodeError", "Reader"]
