"""Operator-set rules the profile model applies: base currency, FX rates, channel costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType

from clientela.shared.contracts import Channel

# Money leaves the domain with four decimal places, the precision the contracts accept.
MONEY_QUANTUM = Decimal("0.0001")

DEFAULT_CHANNEL_COSTS: Mapping[Channel, Decimal] = MappingProxyType(
    {
        Channel.PHONE: Decimal("4.00"),
        Channel.BRANCH: Decimal("15.00"),
        Channel.EMAIL: Decimal("0.02"),
        Channel.SMS: Decimal("0.05"),
        Channel.MAIL: Decimal("0.80"),
        Channel.WEB: Decimal("0.01"),
        Channel.APP: Decimal("0.01"),
        Channel.CHAT: Decimal("0.50"),
    }
)


def quantize_money(amount: Decimal) -> Decimal:
    """Round an amount to the contract precision (banker's rounding)."""
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class ProfilePolicy:
    """How amounts are converted, what a contact costs and when a customer lapses."""

    base_currency: str = "EUR"
    fx_rates: Mapping[str, Decimal] = field(default_factory=dict)
    channel_costs: Mapping[Channel, Decimal] = field(default_factory=lambda: DEFAULT_CHANNEL_COSTS)
    lapse_after: timedelta = timedelta(days=365)

    def to_base(self, amount: Decimal, currency: str) -> Decimal | None:
        """Return the amount in the base currency, or None when no rate is configured."""
        if currency == self.base_currency:
            return quantize_money(amount)
        rate = self.fx_rates.get(currency)
        if rate is None:
            return None
        # Each amount is rounded once, on conversion, so sums do not depend on arrival order.
        return quantize_money(amount * rate)

    def channel_cost(self, channel: Channel) -> Decimal:
        """Return the default cost to serve one touchpoint on the channel, in base currency."""
        return self.channel_costs.get(channel, Decimal(0))
