"""Reading consumed records cheaply: only the fields campaigns use, only the records that matter.

Every record is first read with msgspec into a struct of the envelope and the few fields the
service uses (unknown fields are skipped without being built). Touchpoints that refer to no
campaign message are then dropped: they cannot matter. A record the light reading refuses is
decoded with its full contract, which either accepts it (and its canonical form is read
again) or says precisely why it is bad, for the dead letter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from clientela.campaign.application.decide_campaigns import (
    CampaignInputs,
    ErasureRequest,
    MergeNotice,
    ProfileUpdate,
    ReactionReceived,
    ScoresUpdate,
)
from clientela.campaign.domain.model import Contact, ScoreFacts, TraceFields, Trigger
from clientela.campaign.domain.responses import MESSAGE_PROPERTY, reaction_of
from clientela.campaign.domain.triggers import Cause, categories_of, habits_of, tier_trigger
from clientela.shared.codec import decode_event, encode_event
from clientela.shared.contracts import (
    Channel,
    ConsentStatus,
    Envelope,
    Lifecycle,
    ProfileChangedEvent,
    ProfileErasedEvent,
    ProfilesMergedEvent,
    ScoresUpdatedEvent,
    Segment,
    Tier,
    TierChangedEvent,
    TierMove,
    TouchpointRecorded,
)

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ProfileId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Aware = Annotated[datetime, msgspec.Meta(tz=True)]
Version = Annotated[int, msgspec.Meta(ge=1)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
Trait = str | int | float | bool | None


class _Envelope(msgspec.Struct, kw_only=True):
    event_id: Id
    type: str
    schema_version: int = 1
    occurred_at: Aware
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    correlation_id: Id | None = None


class _Email(msgspec.Struct):
    campaign_message_id: str | None = None


class _TouchpointData(msgspec.Struct, kw_only=True):
    kind: str
    channel: Channel
    direction: str
    identifiers: dict[str, Any]
    email: _Email | None = None
    properties: dict[str, Trait] = {}


class _Touchpoint(_Envelope, kw_only=True):
    data: _TouchpointData


class _Consent(msgspec.Struct):
    status: ConsentStatus
    updated_at: Aware


class _Aggregates(msgspec.Struct, kw_only=True):
    last_seen_at: Aware | None = None
    counts_by_channel: dict[str, int] = {}
    purchase_count: Annotated[int, msgspec.Meta(ge=0)] = 0
    last_purchase_at: Aware | None = None
    total_spend: Decimal = Decimal(0)
    purchase_categories: dict[str, int] = {}
    inbound_channel_preference: dict[str, float] = {}


class _ProfileData(msgspec.Struct, kw_only=True):
    profile_id: ProfileId
    version: Version
    lifecycle: Lifecycle
    reachable_channels: list[Channel] = []
    consent: dict[Channel, _Consent] = {}
    traits: dict[str, Trait] = {}
    aggregates: _Aggregates


class _Profile(_Envelope, kw_only=True):
    data: _ProfileData


class _ScoresData(msgspec.Struct, kw_only=True):
    profile_id: ProfileId
    profile_version: Version
    lifecycle: Lifecycle
    tier: Tier
    predicted_value: Annotated[float, msgspec.Meta(ge=0)]
    segment: Segment | None = None
    potential: Share | None = None
    at_risk: bool = False


class _Scores(_Envelope, kw_only=True):
    data: _ScoresData


class _TierData(msgspec.Struct, kw_only=True):
    profile_id: ProfileId
    profile_version: Version
    from_tier: Tier | None
    to_tier: Tier
    move: TierMove
    lifecycle: Lifecycle
    predicted_value: Annotated[float, msgspec.Meta(ge=0)]


class _Tier(_Envelope, kw_only=True):
    data: _TierData


_TOUCHPOINT = msgspec.json.Decoder(_Touchpoint)
_PROFILE = msgspec.json.Decoder(_Profile)
_SCORES = msgspec.json.Decoder(_Scores)
_TIER = msgspec.json.Decoder(_Tier)
_ENCODE = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Context:
    """Where a record sits in its chain: accept time and trace fields."""

    accepted_at_ms: int | None = None
    trace: TraceFields = ()


Item = ProfileUpdate | ScoresUpdate | Trigger | ReactionReceived | ErasureRequest | MergeNotice


def _current(envelope: _Envelope, contract: type[Envelope]) -> bool:
    return envelope.type == contract.EVENT_TYPE and envelope.schema_version <= (
        contract.SCHEMA_VERSION
    )


def _light(decoder: msgspec.json.Decoder[Any], contract: type[Envelope], value: bytes) -> Any:
    """Read a record with its light struct; fall back to the full contract (raises DecodeError)."""
    try:
        found = decoder.decode(value)
        if _current(found, contract):
            return found
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    # Raises DecodeError with the precise reason when the record is bad.
    event = decode_event(contract, value)
    try:
        return decoder.decode(encode_event(event))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # pragma: no cover
        raise AssertionError(f"a valid {contract.EVENT_TYPE} does not read back: {exc}") from exc


def _cause(e: _Envelope, ctx: Context | None) -> Cause:
    if ctx is None:
        return Cause(e.event_id, e.occurred_at, e.correlation_id)
    return Cause(e.event_id, e.occurred_at, e.correlation_id, ctx.accepted_at_ms, ctx.trace)


def read_touchpoint(value: bytes, ctx: Context | None) -> ReactionReceived | None:
    """Return the reaction a touchpoint carries, or None when it refers to no message."""
    probe = _light(_TOUCHPOINT, TouchpointRecorded, value)
    data: _TouchpointData = probe.data
    ref = data.email.campaign_message_id if data.email is not None else None
    prop = data.properties.get(MESSAGE_PROPERTY)
    if not ref and not (isinstance(prop, str) and prop):
        return None
    # Rare and consequential: the full contract, and the domain's reading of it.
    event = decode_event(TouchpointRecorded, value)
    reaction = reaction_of(event.data, event.occurred_at)
    return ReactionReceived(event.event_id, reaction) if reaction is not None else None


def _fingerprint(d: _ProfileData) -> str:
    """Digest the facts decisions read, then the purchase facts, from the decoded record.

    The producer's order of lists and maps is kept: a reordering only costs a rewrite.
    """
    a = d.aggregates
    facts = _ENCODE((d.lifecycle, d.reachable_channels, d.consent, d.traits))
    bought = _ENCODE((a.purchase_count, a.total_spend, a.last_purchase_at, a.purchase_categories))
    return (
        hashlib.blake2b(facts, digest_size=4).hexdigest()
        + hashlib.blake2b(bought, digest_size=4).hexdigest()
    )


def read_profile(value: bytes, ctx: Context | None) -> ProfileUpdate:
    """Return what a ProfileChanged record says, its full facts built only on demand."""
    e: _Profile = _light(_PROFILE, ProfileChangedEvent, value)
    d, a = e.data, e.data.aggregates
    habits = habits_of(a.inbound_channel_preference, a.counts_by_channel)

    def facts(last_seen_at: datetime | None = None) -> Contact:
        opted_out = [
            c.updated_at for c in d.consent.values() if c.status is ConsentStatus.OPTED_OUT
        ]
        return Contact(
            profile_id=d.profile_id,
            version=d.version,
            lifecycle=d.lifecycle,
            reachable_channels=frozenset(d.reachable_channels),
            consent={channel: c.status for channel, c in d.consent.items()},
            opted_out_at=max(opted_out) if opted_out else None,
            traits=d.traits,
            habits=habits,
            purchase_count=a.purchase_count,
            total_spend=a.total_spend,
            last_seen_at=last_seen_at if last_seen_at is not None else a.last_seen_at,
            last_purchase_at=a.last_purchase_at,
            categories=categories_of(a.purchase_categories, d.traits),
        )

    return ProfileUpdate(
        cause=_cause(e, ctx),
        profile_id=d.profile_id,
        version=d.version,
        fingerprint=_fingerprint(d),
        last_seen_at=a.last_seen_at,
        habits=habits,
        facts=facts,
    )


def read_scores(value: bytes, ctx: Context | None) -> ScoresUpdate:
    """Return the score facts of a ScoresUpdated record."""
    e: _Scores = _light(_SCORES, ScoresUpdatedEvent, value)
    d = e.data
    facts = ScoreFacts(
        profile_id=d.profile_id,
        profile_version=d.profile_version,
        lifecycle=d.lifecycle,
        tier=d.tier,
        predicted_value=d.predicted_value,
        segment=d.segment,
        potential=d.potential,
        at_risk=d.at_risk,
    )
    return ScoresUpdate(_cause(e, ctx), facts)


def read_tier_change(value: bytes, ctx: Context | None) -> Trigger:
    """Return the trigger of a TierChanged record."""
    e: _Tier = _light(_TIER, TierChangedEvent, value)
    d = e.data
    return tier_trigger(
        event_id=e.event_id,
        profile_id=d.profile_id,
        profile_version=d.profile_version,
        move=d.move,
        from_tier=d.from_tier,
        to_tier=d.to_tier,
        lifecycle=d.lifecycle,
        predicted_value=d.predicted_value,
        occurred_at=e.occurred_at,
        correlation_id=e.correlation_id,
        accepted_at_ms=ctx.accepted_at_ms if ctx else None,
        trace=ctx.trace if ctx else (),
    )


def read_erasure(value: bytes, ctx: Context | None) -> ErasureRequest:
    """Return the erasure a ProfileErased record asks for."""
    event = decode_event(ProfileErasedEvent, value)
    return ErasureRequest(event.event_id, event.data.profile_id)


def read_merge(value: bytes, ctx: Context | None) -> MergeNotice:
    """Return the merge a ProfilesMerged record announces."""
    event = decode_event(ProfilesMergedEvent, value)
    return MergeNotice(event.event_id, event.data.survivor_id, event.data.merged_id)


def inputs_of(items: Sequence[Item]) -> CampaignInputs:
    """Split read items into the use case's inputs, keeping arrival order."""
    # One pass, by exact type: each item is one of the six kinds (a check per kind per item
    # was a few percent of the consumer's CPU).
    split: dict[type, list[Any]] = {kind: [] for kind in _KINDS}
    for item in items:
        split[type(item)].append(item)
    return CampaignInputs(
        profiles=split[ProfileUpdate],
        scores=split[ScoresUpdate],
        tier_changes=split[Trigger],
        reactions=split[ReactionReceived],
        erasures=split[ErasureRequest],
        merges=split[MergeNotice],
    )


_KINDS = (ProfileUpdate, ScoresUpdate, Trigger, ReactionReceived, ErasureRequest, MergeNotice)


READERS = {
    TouchpointRecorded.EVENT_TYPE: read_touchpoint,
    ProfileChangedEvent.EVENT_TYPE: read_profile,
    ScoresUpdatedEvent.EVENT_TYPE: read_scores,
    TierChangedEvent.EVENT_TYPE: read_tier_change,
    ProfileErasedEvent.EVENT_TYPE: read_erasure,
    ProfilesMergedEvent.EVENT_TYPE: read_merge,
}


def inputs_from_events(
    events: Sequence[Envelope], accepted_at_ms: int | None = None
) -> CampaignInputs:
    """Return the inputs the consumer would build from these events (tests, tools)."""
    items: list[Item] = []
    ctx = Context(accepted_at_ms)
    for event in events:
        item = READERS[event.type](encode_event(event), ctx)
        if item is not None:
            items.append(item)
    return inputs_of(items)


# Reactions, erasures and merges carry no trace or accept time into what they cause.
CONTEXT_FREE = frozenset(
    {TouchpointRecorded.EVENT_TYPE, ProfileErasedEvent.EVENT_TYPE, ProfilesMergedEvent.EVENT_TYPE}
)
