"""Explicit, versioned Arrow schemas for everything the project reads and writes.

Every Parquet file we write carries ``journeys.schema`` and ``journeys.schema_version`` in its
metadata, so a reader can tell what it holds and refuse a version it does not understand. Each
schema has its own version: a change to the journeys tables does not make an embedding cache or a
sample unreadable.
"""

from __future__ import annotations

import pyarrow as pa

# The version of the journeys, named journeys, journey labels and lineage tables, and of the run
# summaries. Version 2 added journey identity across runs: first_seen and version on every journey,
# the naming decision on named journeys, status and version on labels, and the lineage table.
SCHEMA_VERSION = "2"
_UNCHANGED = "1"  # tables whose layout has not changed since version 1

# Columns an input must have; the rest are optional.
EVENT_REQUIRED = ("user_id", "item_id", "timestamp")
EVENT_OPTIONAL = ("weight", "event_type")
ITEM_REQUIRED = ("item_id", "title")
ITEM_OPTIONAL = ("tags", "category", "text")

_TS = pa.timestamp("us", tz="UTC")


VERSIONS: dict[str, str] = {}  # schema name -> the version this release writes and reads


def _with_meta(name: str, fields: list[pa.Field], version: str = _UNCHANGED) -> pa.Schema:
    VERSIONS[name] = version
    return pa.schema(
        fields,
        metadata={b"journeys.schema": name.encode(), b"journeys.schema_version": version.encode()},
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

# Identity across runs (see journeys/lineage.py): when the journey was first seen (kept from the
# previous run when it matched one) and how many times its items changed (1 for a new journey).
_IDENTITY_FIELDS = [
    pa.field("first_seen", _TS, nullable=False),
    pa.field("version", pa.int64(), nullable=False),
]

JOURNEYS = _with_meta("journeys", [*_JOURNEY_FIELDS, *_IDENTITY_FIELDS], SCHEMA_VERSION)

# Clusters that failed the persistence filter: same record plus why they failed.
TRANSIENT = _with_meta("transient", [*_JOURNEY_FIELDS, pa.field("reason", pa.string(), nullable=False)])

# One row per user with valid events (``journeys extract``): what their history was, which persistence
# rule judged it (time, count or log), and the outcome, so that a user without journeys says why.
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
        *_IDENTITY_FIELDS,
        pa.field("name", pa.string(), nullable=False),
        pa.field("naming_strategy", pa.string(), nullable=False),
        pa.field("naming_model", pa.string()),
        pa.field("adapter", pa.string()),
        pa.field("template_version", pa.string()),
        pa.field("grounding", pa.float32(), nullable=False),
        pa.field("fell_back", pa.bool_(), nullable=False),
        pa.field("fallback_reason", pa.string()),
        # new | continuing (the previous name carried over) | changed (a previous journey, named afresh)
        pa.field("status", pa.string(), nullable=False),
        pa.field("naming_decision", pa.string(), nullable=False),  # named | carried
        pa.field("naming_reason", pa.string(), nullable=False),  # why it was named afresh or carried over
    ],
    SCHEMA_VERSION,
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
        # new | continuing | changed | ended (a previous journey that no longer exists: drop its label)
        pa.field("status", pa.string(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
    ],
    SCHEMA_VERSION,
)

# How this run's journeys descend from the previous run's (journeys/lineage.py). One row per new
# journey (continued | split | new) and one per previous journey that did not continue (merged |
# ended). ``run_time``: the run's as-of time, the latest valid event, so reruns are identical.
LINEAGE = _with_meta(
    "lineage",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("old_id", pa.string()),
        pa.field("new_id", pa.string()),
        pa.field("relation", pa.string(), nullable=False),
        pa.field("run_time", _TS),
    ],
    SCHEMA_VERSION,
)


# What a later delta run (``journeys extract --previous RUN --delta``) continues from, written by every
# extraction. ``history``: one row per user, the events their journeys were made from (valid, on a
# catalogue item, exact repeats dropped), each packed as pipelines/packed_events.py packs it, in time
# order. ``catalogue``: one row per item with events, its text vector and the content it was embedded
# from (``content_key``), so a delta run embeds only new or edited items.
HISTORY = _with_meta(
    "history",
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("num_events", pa.int64(), nullable=False),
        pa.field("first_ts", _TS, nullable=False),
        pa.field("last_ts", _TS, nullable=False),
        pa.field("events", pa.list_(pa.binary()), nullable=False),
    ],
    SCHEMA_VERSION,
)
CATALOGUE = _with_meta(
    "catalogue",
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("content_key", pa.string(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
    ],
    SCHEMA_VERSION,
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
    expected_version = VERSIONS.get(expected_name, SCHEMA_VERSION)
    if version and version != expected_version:
        raise ValueError(
            f"{where} was written with {expected_name} schema version {version}; this release reads "
            f"version {expected_version}. Re-run the step that produced it."
        )
