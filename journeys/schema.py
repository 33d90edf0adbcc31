"""Explicit, versioned Arrow schemas for everything the project reads and writes.

Every Parquet file we write carries ``journeys.schema`` and ``journeys.schema_version`` in its
metadata, so a reader can tell what it holds and refuse a version it does not understand.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1"

# Columns an input must have; the rest are optional.
EVENT_REQUIRED = ("user_id", "item_id", "timestamp")
EVENT_OPTIONAL = ("weight", "event_type")
ITEM_REQUIRED = ("item_id", "title")
ITEM_OPTIONAL = ("tags", "category", "text")

_TS = pa.timestamp("us", tz="UTC")


def _with_meta(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={b"journeys.schema": name.encode(), b"journeys.schema_version": SCHEMA_VERSION.encode()},
    )


EVENTS = _with_meta(
    "events",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("weight", pa.float32()),
        pa.field("event_type", pa.string()),
    ],
)

ITEMS = _with_meta(
    "items",
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("category", pa.string()),
        pa.field("text", pa.string()),
    ],
)

TRUTH = _with_meta(
    "truth",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        # "<user>/<n>" for planted persistent and transient interests, null for noise clicks.
        pa.field("planted_id", pa.string()),
        pa.field("kind", pa.string(), nullable=False),  # persistent | transient | noise
        pa.field("topic_id", pa.string()),
        pa.field("reference_name", pa.string()),
        pa.field("split", pa.string()),  # train | test: naming models are judged on unseen topics
    ],
)

SALIENT_TERM = pa.struct([pa.field("term", pa.string()), pa.field("weight", pa.float32())])

_JOURNEY_FIELDS = [
    pa.field("journey_id", pa.string(), nullable=False),
    pa.field("user_id", pa.string(), nullable=False),
    pa.field("item_ids", pa.list_(pa.string()), nullable=False),
    pa.field("first_ts", _TS, nullable=False),
    pa.field("last_ts", _TS, nullable=False),
    pa.field("num_events", pa.int64(), nullable=False),
    pa.field("num_items", pa.int64(), nullable=False),
    pa.field("active_days", pa.int64(), nullable=False),
    pa.field("span_days", pa.float32(), nullable=False),
    pa.field("salient_terms", pa.list_(SALIENT_TERM), nullable=False),
    pa.field("representative_titles", pa.list_(pa.string()), nullable=False),
    pa.field("centroid", pa.list_(pa.float32()), nullable=False),
    pa.field("persistence", pa.float32(), nullable=False),
    pa.field("strategy", pa.string(), nullable=False),
    pa.field("embedding_model", pa.string(), nullable=False),
]

JOURNEYS = _with_meta("journeys", _JOURNEY_FIELDS)

# Clusters that failed the persistence filter: same record plus why they failed.
TRANSIENT = _with_meta("transient", [*_JOURNEY_FIELDS, pa.field("reason", pa.string(), nullable=False)])

# One row per user with valid events (``journeys extract``): what their history was, which persistence
# rule judged it (time or count), and the outcome, so that a user without journeys says why.
USERS = _with_meta(
    "users",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("num_events", pa.int64(), nullable=False),
        pa.field("num_items", pa.int64(), nullable=False),
        pa.field("active_days", pa.int64(), nullable=False),
        pa.field("span_days", pa.float32(), nullable=False),
        pa.field("persistence_rule", pa.string(), nullable=False),  # time | count
        pa.field("journeys", pa.int64(), nullable=False),
        pa.field("transient_clusters", pa.int64(), nullable=False),
        pa.field("noise_events", pa.int64(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # journeys | only_transient | no_cluster
    ],
)

# A journey with its name: what the naming pipeline writes.
NAMED_JOURNEYS = _with_meta(
    "named_journeys",
    [
        *_JOURNEY_FIELDS,
        pa.field("name", pa.string(), nullable=False),
        pa.field("naming_strategy", pa.string(), nullable=False),
        pa.field("naming_model", pa.string()),
        pa.field("adapter", pa.string()),
        pa.field("template_version", pa.string()),
        pa.field("grounding", pa.float32(), nullable=False),
        pa.field("fell_back", pa.bool_(), nullable=False),
        pa.field("fallback_reason", pa.string()),
    ],
)

# What recommender teams consume (``journeys export``): one row per named journey, flat and small.
# The centroid is left out unless asked for (``journey_labels(include_centroid=True)``): it is most
# of the bytes and most consumers only need the name and the items.
JOURNEY_LABELS = _with_meta(
    "journey_labels",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("journey_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("strategy", pa.string(), nullable=False),  # the naming strategy
        pa.field("model", pa.string()),  # the naming model, when the strategy has one
        pa.field("grounding", pa.float32(), nullable=False),
        pa.field("first_seen", _TS, nullable=False),
        pa.field("last_seen", _TS, nullable=False),
        pa.field("num_events", pa.int64(), nullable=False),
        pa.field("top_item_ids", pa.list_(pa.string()), nullable=False),
        pa.field("representative_titles", pa.list_(pa.string()), nullable=False),
    ],
)


def journey_labels(include_centroid: bool) -> pa.Schema:
    """JOURNEY_LABELS, with the journey's centroid as a last column when asked for."""
    if not include_centroid:
        return JOURNEY_LABELS
    return JOURNEY_LABELS.append(pa.field("centroid", pa.list_(pa.float32()), nullable=False))


# One embedding per user (``journeys encode``). ``encoder`` names the user encoder and ``version`` its
# version and settings: embeddings are comparable only when both are equal. The width is the
# encoder's (fixed for a given version), so it is a list, not a fixed-size list type.
USER_EMBEDDINGS = _with_meta(
    "user_embeddings",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("encoder", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("embedding", pa.list_(pa.float32()), nullable=False),
    ],
)

DEAD_LETTER = _with_meta(
    "dead_letter",
    [
        pa.field("source", pa.string(), nullable=False),  # events | items | journeys | users
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("row", pa.string()),  # the offending row as JSON, so nothing is lost
    ],
)

EMBEDDING_CACHE = _with_meta(
    "embedding_cache",
    [pa.field("key", pa.string(), nullable=False), pa.field("vector", pa.list_(pa.float32()), nullable=False)],
)


def check_version(schema: pa.Schema, expected_name: str, where: str) -> None:
    """Raise a clear error when a file is not ours or is from an incompatible schema version."""
    meta = schema.metadata or {}
    name = meta.get(b"journeys.schema", b"").decode()
    version = meta.get(b"journeys.schema_version", b"").decode()
    if name and name != expected_name:
        raise ValueError(f"{where} holds '{name}' records, expected '{expected_name}'")
    if version and version != SCHEMA_VERSION:
        raise ValueError(
            f"{where} was written with schema version {version}; this release reads version "
            f"{SCHEMA_VERSION}. Re-run the step that produced it."
        )
