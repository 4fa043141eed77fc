"""Tables of the scoring service (no schema: the engine maps them into the service's schema)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect

from clientela.shared.db import UtcDateTime
from clientela.shared.outbox import inbox_table, outbox_table

SERVICE = "scoring"

# Share of each profile_scores page filled by inserts (PostgreSQL), the rest kept for updates.
FILLFACTOR = 85


class EncodedJson(TypeDecorator[Any]):
    """A JSON column written from text that is JSON already: no second serialisation.

    Reads still give parsed JSON. Both drivers take the text as is (SQLite stores it, asyncpg
    sends it as the json value), which saves a `json.dumps` per row on the hot path.
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        """Pass the text through unchanged."""
        return None


metadata = MetaData()

# One row per scored profile: the published scores (state), the facts the models read, and the
# counters that make each derived event id unique. Named apart from the first `scores` table,
# whose rows lacked the facts a sweep needs.
profile_scores = Table(
    "profile_scores",
    metadata,
    Column("profile_id", String(64), primary_key=True),
    Column("profile_version", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("tier_seq", BigInteger, nullable=False),
    Column("lifecycle", String(16), nullable=False),
    # Not indexed: no query looks a tier up (the summary reads every row), and an index on it
    # cost an entry on every write and kept updates from staying on their page (HOT).
    Column("tier", String(1), nullable=False),
    Column("predicted_value", Double, nullable=False),
    Column("at_risk", Boolean, nullable=False),
    Column("purchase_days", Integer, nullable=False),
    Column("purchase_count", Integer, nullable=False),
    Column("first_purchase_s", Double, nullable=True),
    Column("last_purchase_s", Double, nullable=True),
    # Doubles are model inputs only; the exact money travels as strings inside `state`.
    Column("total_spend", Double, nullable=False),
    Column("cost_to_serve", Double, nullable=False),
    Column("prospect_features", EncodedJson(), nullable=True),
    # The ScoresUpdated JSON as published, kept as text: PostgreSQL would parse a json value
    # on every write (about 11 us for a customer's scores), and it is only ever read whole.
    Column("state", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    # Fingerprint of the inputs the scores came from (see ScoreRecord.inputs_digest).
    Column("inputs_digest", BigInteger, nullable=True),
    # The stored cost to serve moved past the published scores: the next sweep announces it.
    Column("republish", Boolean, nullable=False, server_default=false()),
    # The potential the scores published (prospects): a new one is published only when it
    # moved past the tolerance from this.
    Column("potential", Double, nullable=True),
    # Room on each page for the row's next version: a re-score or a kept change then updates
    # in place of the page (HOT), without a new primary-key entry.
    postgresql_with={"fillfactor": FILLFACTOR},
)

tier_history = Table(
    "tier_history",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("profile_id", String(64), nullable=False, index=True),
    Column("profile_version", BigInteger, nullable=False),
    Column("from_tier", String(1), nullable=True),
    Column("to_tier", String(1), nullable=False),
    Column("move", String(16), nullable=False),
    Column("occurred_at", UtcDateTime(), nullable=False),
)

model_parameters = Table(
    "model_parameters",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("parameters", JSON, nullable=False),
    Column("fitted_at", UtcDateTime(), nullable=False),
    Column("as_of", UtcDateTime(), nullable=False),
    Column("customer_count", Integer, nullable=False),
)

# Profiles erased on request, by a keyed hash of the id (HMAC-SHA256 with the service's marker
# key), never the id itself: enough to refuse a ProfileChanged that was still in flight, not
# enough to tell who was erased without the key.
erased_profiles = Table(
    "erased_profiles",
    metadata,
    Column("marker", String(64), primary_key=True),
    Column("erased_at", UtcDateTime(), nullable=False),
)

inbox = inbox_table(metadata)
outbox = outbox_table(metadata)
