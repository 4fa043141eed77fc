"""Operator-set rules the profile model applies: money, costs, identity, survivorship, decay."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from types import MappingProxyType

from clientela.profile.domain.identity import IdentityRules
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


class Survivorship(StrEnum):
    """How a trait's surviving value is chosen among the values stated."""

    MOST_RECENT = "most_recent"
    MOST_FREQUENT = "most_frequent"
    SOURCE_PRIORITY = "source_priority"


@dataclass(frozen=True, slots=True)
class TraitRules:
    """Survivorship per trait (default most recent) and the source order for source priority."""

    default: Survivorship = Survivorship.MOST_RECENT
    per_trait: Mapping[str, Survivorship] = field(default_factory=dict)
    source_priority: tuple[str, ...] = ()

    def rule(self, trait: str) -> Survivorship:
        """Return the rule that decides a trait."""
        return self.per_trait.get(trait, self.default)

    def source_rank(self, source: str) -> int:
        """Return the rank of a source: lower wins; unlisted sources come last, all equal."""
        try:
            return self.source_priority.index(source)
        except ValueError:
            return len(self.source_priority)


@dataclass(frozen=True, slots=True)
class ProfilePolicy:
    """How amounts are converted, what a contact costs and when a customer lapses."""

    base_currency: str = "EUR"
    fx_rates: Mapping[str, Decimal] = field(default_factory=dict)
    channel_costs: Mapping[Channel, Decimal] = field(default_factory=lambda: DEFAULT_CHANNEL_COSTS)
    lapse_after: timedelta = timedelta(days=365)
    identity: IdentityRules = field(default_factory=IdentityRules)
    traits: TraitRules = field(default_factory=TraitRules)
    # Inbound contacts lose half their weight in the channel preference every half-life.
    preference_half_life: timedelta = timedelta(days=90)

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
