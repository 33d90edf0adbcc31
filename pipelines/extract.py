"""Beam pipeline: events + items -> persistent interest journeys, transient clusters, dead letters.

    read events, items -> validate rows (bad rows -> dead letter, with a reason)
    items -> one per id -> those with events -> embedding cache lookup -> each distinct text of the
    misses (title, context) embedded ONCE, in fixed buckets of like length -> item vectors
    events, packed into bytes, keyed by a hash of the user into --num_shards shards -> grouped by
    shard (with the users' journeys from --previous, if given) -> per shard, user by user in id
    order: extract_user (cluster, filter, describe; item vectors from a side input) ->
    assign_identity (keep the ids of journeys that continue; lineage) -> rows streamed into that
    shard's files of journeys/, transient/, users/, lineage/ -> dead_letter/ -> publish, then
    summary.json

Only the events' few fields go through the shuffle, never vectors, and no step holds a whole output
dataset: beyond the shuffle itself, memory grows with the catalogue's vectors and one shard's events.

Every input event ends in a journey, a transient cluster, the noise count, or the dead letters; the
summary's counts add up (``events.balanced``). Runs on the local portable runner by default
(``FnApiRunner``, offline) and on Dataflow with the usual options; see docs/dataflow.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import logging
import time
import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from journeys import centring, io, previous, schema
from journeys.embedding import DEFAULT_MODEL, Embedder, combine, item_texts, model_identity
from journeys.extraction import make_extractor, strategies
from journeys.inputs import InputError, check_inputs
from journeys.item_space import parse_blocks, parse_weights
from journeys.lineage import RELATIONS, MatchConfig, assign_identity
from journeys.model import Item, to_datetime
from journeys.persistence import RULES, PersistenceConfig
from journeys.representation import document_terms
from journeys.user_extraction import ExtractionSettings, dedupe_events, extract_user
from journeys.validation import DeadLetter, validate_event, validate_item, validate_item_vector
from pipelines import delta, packed_events
from pipelines.catalogue_stats import CatalogueStatistics, item_space
from pipelines.embedding_cache import ReadEmbeddingCache, WriteEmbeddingCache
from pipelines.options import CommonOptions, run_and_summarise, time_window, torch_threads
from pipelines.transforms import ROWS_PER_SHARD, Publish, ReadRows, WriteShards, merge_counts, sort_key, stable_shard

log = logging.getLogger(__name__)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# Texts are embedded in LENGTH_CLASSES x EMBED_SHARDS fixed buckets (see _text_bucket): fixed, so that
# batch composition (and so every float) is the same on reruns.
LENGTH_STEP, LENGTH_CLASSES, EMBED_SHARDS = 16, 16, 4
DATASETS = {"journeys": schema.JOURNEYS, "transient": schema.TRANSIENT, "users": schema.USERS,
            "lineage": schema.LINEAGE, "history": schema.HISTORY, "catalogue": schema.CATALOGUE,
            "dead_letter": schema.DEAD_LETTER}


class ExtractOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("journey extraction")
        group.add_argument("--items", help="item catalogue, same formats")
        group.add_argument("--strategy", default="icpc", choices=strategies(), help="clustering strategy")
        group.add_argument("--centring", default="mean", choices=centring.CENTRINGS,
                           help="subtract the mean of the run's item vectors before clustering (mean), or "
                           "cluster the model's vectors as they are (none); see docs/extraction.md")
        group.add_argument("--representation", default=None,
                           help="the item representation's blocks, comma-separated: text (the sentence encoder), "
                           "tags (the catalogue's tags and categories), embedding (your own item vectors: an "
                           "'embedding' column of the items, or --item_vectors), sessions (for histories judged by "
                           "the log rule, the sitting each item was filed in); default: every block the items "
                           "support")
        group.add_argument("--block_weights", default=None,
                           help="weights of the blocks, e.g. text=1,tags=0.5 (a block not named weighs 1, sessions "
                           "0.35)")
        group.add_argument("--item_vectors", default=None,
                           help="your own item vectors: a table of item_id and embedding (a list of numbers of one "
                           "length), any input format, joined to the items on item_id")
        group.add_argument("--threshold", type=float, default=None, help="ICPC: cosine to join a journey (0.4)")
        group.add_argument("--merge_threshold", type=float, default=None,
                           help="ICPC: cosine to merge a small journey (0.3)")
        group.add_argument("--centroid_merge_threshold", type=float, default=None,
                           help="ICPC: merge journeys whose centroids are this similar (0.5; 1 = off)")
        group.add_argument("--min_cluster_size", type=int, default=None,
                           help="fewest distinct items in a cluster (ICPC min_size, HDBSCAN min_cluster_size; 3)")
        group.add_argument("--hdbscan_selection", default=None, choices=["leaf", "eom"],
                           help="HDBSCAN: cluster selection (leaf)")
        group.add_argument("--log_threshold", type=float, default=None,
                           help="ICPC, histories judged by the log rule: cosine to join a journey (0.5)")
        group.add_argument("--log_merge_threshold", type=float, default=None,
                           help="ICPC, log rule: cosine to merge a small journey (0.2)")
        group.add_argument("--log_centroid_merge_threshold", type=float, default=None,
                           help="ICPC, log rule: merge journeys whose centroids are this similar (1 = off, the "
                           "default)")
        group.add_argument("--min_items", type=int, default=PersistenceConfig.min_items,
                           help="persistence: fewest distinct items in a journey")
        group.add_argument("--min_span_days", type=float, default=PersistenceConfig.min_span_days,
                           help="persistence: fewest days between first and last event")
        group.add_argument("--min_active_days", type=int, default=PersistenceConfig.min_active_days,
                           help="persistence: fewest distinct days with activity")
        group.add_argument("--persistence", default=PersistenceConfig.rule, choices=RULES,
                           help="persistence rule: time (items, span, active days), count (items and a return), "
                           "log (items only, the clustering's floor), or auto: log for histories that record each "
                           "item once, time for users whose own history spans min_span_days over min_active_days "
                           "days, count for the rest (default)")
        group.add_argument("--count_min_items", type=int, default=PersistenceConfig.count_min_items,
                           help="persistence: fewest distinct items in a journey under the count rule")
        group.add_argument("--count_min_returns", type=int, default=PersistenceConfig.count_min_returns,
                           help="persistence: fewest returns (events on an item of the cluster seen before) in a "
                           "journey under the count rule")
        group.add_argument("--log_min_items", type=int, default=None,
                           help="persistence: fewest distinct items in a journey under the log rule (default: the "
                           "clustering's minimum cluster size)")
        group.add_argument("--log_max_returns", type=float, default=PersistenceConfig.log_max_returns,
                           help="persistence, auto: judge a user by the log rule when at most this share of their "
                           "events return to an item seen before (ratings, tags: each item once)")
        group.add_argument("--statistics", default="events", choices=["events", "catalogue"],
                           help="the items the catalogue statistics (the mean vectors, the tag space) are computed "
                           "over: those with events (default: only they are embedded), or every catalogue item "
                           "(all are embedded; the statistics then change only when the catalogue does, so a "
                           "--delta run agrees with a fresh run for every user, carried ones included)")
        group.add_argument("--embedding_model", default=DEFAULT_MODEL,
                           help="sentence-transformers model id or path (default: the packaged all-MiniLM-L6-v2)")
        group.add_argument("--embedding_cache", default=None,
                           help="folder for cached item vectors, keyed by model and item content; reruns reuse them")
        group.add_argument("--embed_batch_size", type=int, default=64, help="texts per encoder batch")
        group.add_argument("--num_shards", type=int, default=4,
                           help="Parquet files per output dataset; also how many parts the per-user step is cut "
                           "into (on Dataflow, its parallelism: give a few per worker core; each part's events "
                           "must fit in a worker's memory)")
        group.add_argument("--delta", action="store_true",
                           help="with --previous: --events hold only the events since that run. Users with new "
                           "events are extracted again from their whole history (the previous run's history/ plus "
                           "the new events); every other user's rows are carried over as they were; only new or "
                           "edited items are embedded. Keep the previous run's --num_shards (docs/incremental.md)")
        group.add_argument("--embed_per_event", action="store_true",
                           help="benchmark baseline only: embed every event's item instead of each item once")
        group.add_argument("--min_overlap", type=float, default=MatchConfig.min_overlap,
                           help="--previous: share of the smaller journey's items the other must hold to match")
        group.add_argument("--min_similarity", type=float, default=MatchConfig.min_similarity,
                           help="--previous: centroid cosine two journeys must have to match")


def persistence_config(opts: ExtractOptions) -> PersistenceConfig:
    """The persistence filter; the log rule's floor is the clustering's own minimum size unless set."""
    floor = opts.log_min_items
    if floor is None:
        config = make_extractor(opts.strategy, **extractor_params(opts)).config
        floor = getattr(config, "min_size", None) or getattr(config, "min_cluster_size", None) or 3
    return PersistenceConfig(min_items=opts.min_items, min_span_days=opts.min_span_days,
                             min_active_days=opts.min_active_days, rule=opts.persistence,
                             count_min_items=opts.count_min_items, count_min_returns=opts.count_min_returns,
                             log_min_items=floor, log_max_returns=opts.log_max_returns)


def representation(opts: ExtractOptions) -> tuple[tuple[str, ...], dict]:
    """(the blocks, the block weights). ``run`` settles the default before the graph is built (every
    block the items support: text, tags and sessions, and embedding when vectors are given), so that
    building the graph reads nothing; a graph built without ``run`` takes text, tags and sessions."""
    blocks = parse_blocks(opts.representation) or ("text", "tags", "sessions")
    weights = parse_weights(opts.block_weights)
    unused = sorted(set(weights) - set(blocks))
    if unused:
        raise ValueError(f"--block_weights names {', '.join(unused)}, which --representation does not use")
    return blocks, weights


def settle_representation(opts: ExtractOptions, vector_width: int | None) -> None:
    """Fill in the default blocks from what the items carry, or refuse the embedding block without
    vectors. ``vector_width``: the given vectors' length (None: no vectors given)."""
    blocks = parse_blocks(opts.representation)
    if blocks is None:
        blocks = ("text", "tags", "embedding", "sessions") if vector_width else ("text", "tags", "sessions")
    elif "embedding" in blocks and not vector_width:
        raise ValueError("--representation embedding needs item vectors: an 'embedding' column in the items, "
                         "or --item_vectors")
    opts.representation = ",".join(blocks)


# Histories judged by the log rule are clustered finer: their interests are small and many (HetRec
# MovieLens users' own tag groups: median 5 films, 10 a user) and every item was filed on purpose,
# so small leftovers join their nearest journey and journeys are not merged by their centroids.
LOG_ICPC = {"threshold": 0.5, "merge_threshold": 0.2, "centroid_merge_threshold": 1.0}


def log_extractor_params(opts: ExtractOptions) -> dict | None:
    """ICPC's parameters for log-rule histories (the run's, with the log ones over them); None for
    other strategies, which cluster every history alike."""
    if opts.strategy != "icpc":
        return None
    named = {"threshold": opts.log_threshold, "merge_threshold": opts.log_merge_threshold,
             "centroid_merge_threshold": opts.log_centroid_merge_threshold}
    return {**extractor_params(opts), **LOG_ICPC, **{k: v for k, v in named.items() if v is not None}}


def extractor_params(opts: ExtractOptions) -> dict:
    """Only the parameters the user set, under the chosen strategy's names."""
    if opts.strategy == "icpc":
        named = {"threshold": opts.threshold, "merge_threshold": opts.merge_threshold,
                 "centroid_merge_threshold": opts.centroid_merge_threshold, "min_size": opts.min_cluster_size}
    else:
        named = {"min_cluster_size": opts.min_cluster_size, "selection": opts.hdbscan_selection}
    return {k: v for k, v in named.items() if v is not None}


# ---- validation -------------------------------------------------------------------------------

class _Validate(beam.DoFn):
    """Numbered parsed rows -> clean records (main output) or dead letters (tagged 'dead') that name
    the file and row; and per-file counts (tagged 'files'), so that each file's rows can be balanced."""

    def __init__(self, source: str, validate):
        self.source, self.validate = source, validate
        self.rows = Metrics.counter("extract", f"{source}_read")

    def start_bundle(self):
        self.file_counts: dict[str, int] = {}

    def _count(self, what: str, file: str) -> None:
        key = f"file.{self.source}.{what}.{file}"
        self.file_counts[key] = self.file_counts.get(key, 0) + 1

    def process(self, parsed):
        row, problem, file, number = parsed
        self.rows.inc()
        self._count("read", file)
        if row is None:
            self._count("rejected", file)
            yield beam.pvalue.TaggedOutput("dead", DeadLetter(self.source, "malformed_row", problem))
            return
        clean, dead = self.validate(row)
        if dead is not None:
            self._count("rejected", file)
            yield beam.pvalue.TaggedOutput("dead", dataclasses.replace(dead, detail=f"{file} row {number}: "
                                                                       f"{dead.detail}"))
        else:
            yield clean

    def finish_bundle(self):
        for key, count in self.file_counts.items():  # one count per file and bundle, not per row
            yield beam.pvalue.TaggedOutput("files", WindowedValue((key, count), MIN_TIMESTAMP, [GlobalWindow()]))


def _attach_vector(element, required: bool):
    """(item_id, {"item": [Item], "vector": [vector]}) -> the items with their vector. One vector row
    per item id: extra rows are dead letters (the smallest vector is kept, so reruns agree), as are
    vectors of no item; an item without a vector is one too when the embedding block is in use."""
    item_id, grouped = element
    vectors = sorted(grouped["vector"])
    for extra in vectors[1:]:
        yield beam.pvalue.TaggedOutput("dead", DeadLetter(
            "item_vectors", "duplicate_vector", "another row has a vector for the same item_id",
            {"item_id": item_id, "embedding": list(extra)}, None, item_id))
    items = list(grouped["item"])
    if not items:
        for vector in vectors[:1]:
            yield beam.pvalue.TaggedOutput("dead", DeadLetter(
                "item_vectors", "unknown_item", "item_id is not in the item catalogue (or its row was rejected)",
                {"item_id": item_id, "embedding": list(vector)}, None, item_id))
        return
    for item in items:
        if vectors:
            yield item._replace(embedding=vectors[0])
        elif required:
            yield beam.pvalue.TaggedOutput("dead", DeadLetter(
                "items", "missing_vector", "--item_vectors has no vector for this item and the representation "
                "uses the embedding block", item._asdict(), None, item_id))
        else:
            yield item


def _one_item_per_id(element):
    """Keep one row per item id (the smallest, so the choice is deterministic); dead-letter the rest."""
    item_id, copies = element
    copies = sorted(copies, key=lambda it: (it.title, it.tags, it.category or "", it.text or ""))
    yield copies[0]
    for extra in copies[1:]:
        yield beam.pvalue.TaggedOutput(
            "dead", DeadLetter("items", "duplicate_item", "another row has the same item_id",
                               extra._asdict(), None, item_id))


# ---- embedding ----------------------------------------------------------------------------------

class _SplitCached(beam.DoFn):
    """(content_key, {'item': [...], 'cached': [...]}) -> (item, vector) hits, or misses tagged 'miss'."""

    def process(self, element):
        _, grouped = element
        cached = list(grouped["cached"])
        for item in grouped["item"]:
            if cached:
                yield item, cached[0]
            else:
                yield beam.pvalue.TaggedOutput("miss", item)


def _text_bucket(text: str) -> tuple[int, int]:
    """A fixed bucket for a text, from its length and a hash of it. Texts of one bucket have about
    the same length, so batches carry little padding (about 15% less encoder time than buckets by
    hash alone, measured on the sample); the bucket depends only on the text, so batches, and every
    float, are the same on reruns."""
    shard = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % EMBED_SHARDS
    return min(len(text) // LENGTH_STEP, LENGTH_CLASSES - 1), shard


class _EmbedTexts(beam.DoFn):
    """(bucket, texts) -> (text, vector) for each text; the model is loaded once per worker."""

    def __init__(self, model_name: str, batch_size: int, torch_threads: int):
        self.model_name, self.batch_size, self.torch_threads = model_name, batch_size, torch_threads
        self.embedded = Metrics.counter("extract", "texts_embedded")

    def setup(self):
        self.embedder = Embedder(self.model_name, self.batch_size, self.torch_threads)
        self.done, self.started, self.last_report = 0, time.time(), 0.0

    def process(self, element, total: int):
        _, texts = element
        texts = sorted(texts)
        vectors = self.embedder.encode(texts)
        self.embedded.inc(len(texts))
        self.done += len(texts)
        now = time.time()
        if now - self.last_report >= 10 or self.done >= total:  # a progress line every 10 s
            self.last_report = now
            rate = self.done / max(now - self.started, 1e-9)
            log.info("embedding catalogue: %d of %d distinct texts on this worker so far (%.0f%% of all), "
                     "%.0f texts/s", self.done, total, 100 * self.done / max(total, 1), rate)
        yield from zip(texts, vectors)


def _item_vector(item: Item, text_vectors: dict) -> tuple[Item, object]:
    """An item with its vector, put together from its texts' vectors as ``embed_items`` does."""
    title, context = item_texts(item)
    return item, combine(text_vectors[title][None, :], [text_vectors[context] if context else None])[0]


class EmbedCatalogue(beam.PTransform):
    """(Item) -> {"vectors": (Item, vector), "texts": how many texts were embedded}, reading and
    extending the embedding cache.

    Each distinct text (a title, or a context that many items share) is embedded once per run,
    in buckets of texts of about the same length; the item's vector is then put together from its
    texts' vectors as ``journeys.embedding.embed_items`` does."""

    def __init__(self, model_name: str, cache: str | None, batch_size: int, torch_threads: int,
                 once_per_text: bool = True):
        super().__init__()
        self.model_name, self.cache = model_name, cache
        self.batch_size, self.torch_threads = batch_size, torch_threads
        self.once_per_text = once_per_text  # False only for the per-event benchmark baseline

    def expand(self, items):
        if self.cache:
            cached = items.pipeline | "ReadCache" >> ReadEmbeddingCache(self.cache, self.model_name)
            split = (
                {"item": items | "KeyByContent" >> beam.Map(lambda it: (it.content_key(), it)), "cached": cached}
                | "JoinCache" >> beam.CoGroupByKey()
                | "SplitCached" >> beam.ParDo(_SplitCached()).with_outputs("miss", main="hit")
            )
            hits, misses = split.hit, split.miss
        else:
            hits, misses = None, items
        texts = misses | "Texts" >> beam.FlatMap(lambda it: [text for text in item_texts(it) if text])
        if self.once_per_text:
            texts = texts | "DistinctTexts" >> beam.Distinct()
        total = texts | "CountTexts" >> beam.combiners.Count.Globally()
        text_vectors = (
            texts
            | "Bucket" >> beam.Map(lambda text: (_text_bucket(text), text))
            | "GroupBuckets" >> beam.GroupByKey()
            | "Embed" >> beam.ParDo(_EmbedTexts(self.model_name, self.batch_size, self.torch_threads),
                                    total=beam.pvalue.AsSingleton(total))
        )
        # The texts' vectors as a side input: as large as the catalogue's vectors, which the
        # per-user step takes as a side input too.
        fresh = misses | "CombineTexts" >> beam.Map(_item_vector, text_vectors=beam.pvalue.AsDict(text_vectors))
        if not self.cache:
            return {"vectors": fresh, "texts": total}
        _ = fresh | "WriteCache" >> WriteEmbeddingCache(self.cache, self.model_name)
        return {"vectors": (hits, fresh) | "AllVectors" >> beam.Flatten(), "texts": total}


def _items_once_per_event(element):
    """Benchmark baseline: repeat an item once for every event on it."""
    _, grouped = element
    items = list(grouped["item"])
    for _event in grouped["event"]:
        if items:
            yield items[0]


def _first_vector(element):
    _, pairs = element
    return min(pairs, key=lambda pair: pair[0].content_key())


# ---- group and extract -------------------------------------------------------------------------

def _previous_record(row: dict) -> tuple[str, dict]:
    """A previous run's journey row -> (user_id, what matching needs), times in microseconds."""
    first_seen = row["first_seen"]
    micros = first_seen if isinstance(first_seen, int) else (first_seen - _EPOCH) // datetime.timedelta(microseconds=1)
    return row["user_id"], {"journey_id": row["journey_id"], "item_ids": list(row["item_ids"]),
                            "centroid": list(row["centroid"]), "first_seen": micros, "version": row["version"]}


def _latest(times) -> int | None:
    return max((t for t in times if t is not None), default=None)


# The datasets written by the per-user step itself, one file per shard, and their row order.
SHARD_DATASETS = {"journeys": ("user_id", "first_ts", "journey_id"), "transient": ("user_id", "first_ts", "journey_id"),
                  "users": ("user_id",), "lineage": ("user_id", "relation", "old_id", "new_id"),
                  "history": ("user_id",)}


class _ExtractShard(beam.DoFn):
    """(shard, {"events": [packed event], "previous": [(user_id, journey)]}) -> that shard's files of
    journeys/, transient/, users/, lineage/ and history/, written here (main output: each file's
    ``{"path", "size", "sha256"}``), with dead letters (events on unknown items among them) and counts
    tagged.

    Users are taken in id order and their rows written as they come (``io.ParquetRows``), so the
    files are sorted as ``WriteShards`` sorts them and this step holds one user's work and a row
    group at a time, never a whole dataset. ``catalogue`` maps item_id -> (item, vector).

    In a delta run (``delta_from``: the previous extraction's folder) the shard's previous rows are
    read here: a user with new events is extracted from their history plus those events, any other
    user's rows are copied as they were (pipelines/delta.py)."""

    def __init__(self, staging: str, strategy: str, params: dict, persistence: PersistenceConfig, model: str,
                 match: MatchConfig, blocks: tuple[str, ...] | None, weights: dict, log_params: dict | None,
                 delta_from: str | None = None, previous_as_of: int | None = None):
        self.staging = staging
        self.blocks, self.weights = blocks, weights
        self.strategy, self.params, self.persistence, self.model = strategy, params, persistence, model
        self.log_params = log_params
        self.match = match
        self.delta_from, self.previous_as_of = delta_from, previous_as_of
        self.users = Metrics.counter("extract", "users")
        self.journeys = Metrics.counter("extract", "journeys")

    def setup(self):
        self.settings = ExtractionSettings(
            make_extractor(self.strategy, **self.params), self.persistence, self.strategy, self.model,
            log_extractor=None if self.log_params is None else make_extractor(self.strategy, **self.log_params))

    def process(self, element, catalogue: dict, catalogue_df: dict, catalogue_size: int, run_time: int | None,
                statistics: dict):
        shard, grouped = element
        histories: dict[str, list[bytes]] = {}
        for packed in grouped["events"]:
            if packed is None:  # a delta run's marker that the shard exists
                continue
            histories.setdefault(packed_events.user_of(packed), []).append(packed)
        previous_of: dict[str, list[dict]] = {}
        for user_id, journey in grouped["previous"]:
            previous_of.setdefault(user_id, []).append(journey)
        space = item_space(self.blocks, self.weights, statistics)
        counts: dict[str, int] = {}
        started = time.perf_counter()
        carried = None if self.delta_from is None else delta.PreviousShard(self.delta_from, shard)
        carry_seconds = time.perf_counter() - started
        recompute_seconds = 0.0
        with contextlib.ExitStack() as files:  # each file appears under its name only if all went well
            writers = {name: files.enter_context(io.ParquetRows(
                io.join(self.staging, name, f"part-{shard:05d}.parquet"), DATASETS[name])) for name in SHARD_DATASETS}
            users = histories.keys() | previous_of.keys() | (carried.users() if carried else set())
            for user_id in sorted(users):
                started = time.perf_counter()
                rows = {name: [] for name in SHARD_DATASETS}
                events = [packed_events.unpack(packed) for packed in histories.pop(user_id, [])]
                if carried is None:
                    yield from self._user(user_id, events, previous_of.get(user_id, []), rows, counts, catalogue,
                                          catalogue_df, catalogue_size, run_time, space)
                elif events:
                    before = carried.take(user_id)
                    yield from self._user(user_id, self._continue(events, before["history"], counts),
                                          [_previous_record(row)[1] for row in before["journeys"]], rows, counts,
                                          catalogue, catalogue_df, catalogue_size, run_time, space)
                else:
                    rows = carried.take(user_id)
                    delta.count_carried(rows, counts)
                for name, fields in SHARD_DATASETS.items():  # the user id is the first sort field
                    writers[name].add(sorted(rows[name], key=sort_key(fields[1:])))
                spent = time.perf_counter() - started
                if carried is not None and not events:
                    carry_seconds += spent
                else:
                    recompute_seconds += spent
        yield from (writer.written for writer in writers.values() if writer.rows)
        if carried is not None:  # milliseconds, summed over shards: the summary's per-part wall time
            counts["delta.carry_ms"] = round(carry_seconds * 1000)
            counts["delta.recompute_ms"] = round(recompute_seconds * 1000)
        for name, count in sorted(counts.items()):
            yield beam.pvalue.TaggedOutput("counts", (name, count))

    def _continue(self, new_events: list, history_rows: list[dict], counts: dict) -> list:
        """A delta run's user with new events: their previous history and the new events, as one
        list for ``_user``. Nothing is dropped here: an event that repeats one of the history (same
        item, time and type) is a ``duplicate_event`` dead letter there, as in a fresh run over both
        files, and counted here as a repeat; an event before the previous run's as-of time is late
        and joins the history like any other."""
        old = [event for row in history_rows for event in delta.history_events(row)]
        keys = {(e.item_id, e.ts, e.event_type) for e in old}
        counts["delta.users.recomputed"] = counts.get("delta.users.recomputed", 0) + 1
        for name, n in (("delta.users.new", int(not history_rows)), ("delta.events.from_history", len(old)),
                        ("delta.events.repeats_of_history",
                         sum((e.item_id, e.ts, e.event_type) in keys for e in new_events)),
                        ("delta.events.late", sum(self.previous_as_of is not None and e.ts < self.previous_as_of
                                                  for e in new_events))):
            counts[name] = counts.get(name, 0) + n
        return old + new_events

    def _user(self, user_id, history, previous_journeys, rows, counts, catalogue, catalogue_df, catalogue_size,
              run_time, space):
        """One user: cluster, keep identity, add their rows to ``rows`` and counts to ``counts``; yields
        their dead letters."""
        def count(name: str, n: int = 1) -> None:
            counts[name] = counts.get(name, 0) + n

        events = []
        for event in history:
            if event.item_id in catalogue:
                events.append(event)
            else:
                yield beam.pvalue.TaggedOutput(
                    "dead", DeadLetter("events", "unknown_item", "item_id is not in the item catalogue "
                                       "(or its catalogue row was rejected)", event._asdict(), user_id,
                                       event.item_id))
        if not events:  # no usable events in this run: all the user's previous journeys ended
            _, lineage = assign_identity(user_id, previous_journeys, [], self.match, run_time)
        else:
            result = extract_user(user_id, events, catalogue, self.settings, catalogue_df, catalogue_size, space)
            # Identity is a step after clustering: the clustering never sees the previous run.
            journeys, lineage = assign_identity(user_id, previous_journeys, result.journeys, self.match, run_time)
            self.users.inc()
            self.journeys.inc(len(journeys))
            rows["journeys"].extend(journeys)
            rows["transient"].extend(result.transient)
            rows["users"].append(result.user)
            rows["history"].append(delta.history_row(user_id, dedupe_events(events)[0]))
            for dead in result.dead_letters:
                yield beam.pvalue.TaggedOutput("dead", dead)
            for name, n in (
                (f"users_rule.{result.user['persistence_rule']}", 1),
                (f"users_outcome.{result.user['outcome']}", 1),
                ("users", 1),
                ("users_with_journeys", int(bool(result.journeys))),
                ("journeys", len(result.journeys)),
                ("transient_clusters", len(result.transient)),
                ("events_in_journeys", result.events_in_journeys),
                ("events_in_transient", result.events_in_transient),
                ("noise_events", result.noise_events),
            ):
                count(name, n)
        rows["lineage"].extend(lineage)
        for row in lineage:
            count(f"lineage.{row['relation']}")


class _PublishExtraction(Publish):
    """Publish, with the item representation the clustering used recorded in the summary: its blocks,
    their dimensions and weights, and the catalogue statistics (the means, the tag space) with hashes."""

    def __init__(self, *args, blocks: tuple[str, ...] | None, weights: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.blocks, self.weights = blocks, weights

    def process(self, _, written: list[str], counts: list[tuple[str, int]], statistics: dict, run_time: int | None):
        summary = self.summarise(merge_counts(counts))
        # What a delta run builds on: its new events may be older than this (late), but never needed.
        summary["as_of"] = None if run_time is None else to_datetime(run_time).isoformat()
        text_mean = statistics["text_mean"]
        summary["centring"] = centring.describe(*text_mean) if text_mean else {"method": "none"}
        space = item_space(self.blocks, self.weights, statistics)
        widths = statistics["dimensions"]
        summary["representation"] = space.describe(widths.get("text"), widths.get("embedding") or None)
        yield self.publish(written, summary)


class Summarise:
    """Turns the run's counters into summary.json (a picklable callable for Publish)."""

    def __init__(self, config: dict):
        self.config = config

    def __call__(self, counts: dict[str, int]) -> dict:
        def by(prefix: str) -> dict[str, int]:
            """The counts whose key starts with ``prefix``, keyed by the rest."""
            return {k[len(prefix):]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}

        event_rejects, item_rejects = by("rejected.events."), by("rejected.items.")
        files: dict[str, dict[str, dict[str, int]]] = {"events": {}, "items": {}}
        vector_rejects = by("rejected.item_vectors.")
        for key, count in counts.items():
            if key.startswith("file."):  # file.<source>.<read|rejected>.<path>
                _, source, what, path = key.split(".", 3)
                files.setdefault(source, {}).setdefault(path, {"read": 0, "rejected": 0})[what] = count
        # Every parsed row is counted once, per file, by _Validate: the totals are the files' sums.
        events_read, items_read = (sum(f["read"] for f in files[source].values()) for source in ("events", "items"))
        events = {
            "read": events_read,
            "in_journeys": counts.get("events_in_journeys", 0),
            "in_transient": counts.get("events_in_transient", 0),
            "noise": counts.get("noise_events", 0),
            "rejected": sum(event_rejects.values()),
            "rejected_by_reason": event_rejects,
        }
        events["used"] = events["in_journeys"] + events["in_transient"] + events["noise"]
        delta_counts = by("delta.")
        if self.config.get("delta"):  # events also came from the previous run's history, carried or not
            events["from_history"] = delta_counts.get("events.from_history", 0)
            events["carried"] = delta_counts.get("events.carried", 0)
        events["balanced"] = (events["read"] + events.get("from_history", 0) + events.get("carried", 0)
                              == events["used"] + events["rejected"])
        users = counts.get("users", 0)
        return {
            "schema_version": schema.SCHEMA_VERSION,
            "config": self.config,
            "events": events,
            "items": {
                "read": items_read,
                "in_catalogue": counts.get("items_in_catalogue", 0),
                "with_events": counts.get("items_used", 0),  # the only ones embedded, unless --statistics catalogue
                # distinct titles and contexts sent to the encoder (cached items' are not)
                "texts_embedded": counts.get("texts_embedded", 0),
                "rejected": sum(item_rejects.values()),
                "rejected_by_reason": item_rejects,
                "balanced": items_read == counts.get("items_in_catalogue", 0) + sum(item_rejects.values()),
            },
            "users": {
                "with_valid_events": users,
                "with_journeys": counts.get("users_with_journeys", 0),
                "without_journeys": users - counts.get("users_with_journeys", 0),
                # time | count: which persistence rule judged each user (see --persistence)
                "by_persistence_rule": by("users_rule."),
                # journeys | only_transient | no_cluster; each user's own row is in users/
                "by_outcome": by("users_outcome."),
            },
            "journeys": counts.get("journeys", 0),
            "transient_clusters": counts.get("transient_clusters", 0),
            "files": files,  # per input file: rows read and rejected (a file with no rows is absent)
            # --item_vectors: rows read; rejected by reason; the rest are attached to their items.
            **({"item_vectors": {"read": sum(f["read"] for f in files["item_vectors"].values()),
                                 "rejected": sum(vector_rejects.values()), "rejected_by_reason": vector_rejects}}
               if "item_vectors" in files else {}),
            # How the journeys relate to --previous's (all "new" without it); see journeys/lineage.py.
            "lineage": {relation: counts.get(f"lineage.{relation}", 0) for relation in RELATIONS},
            "previous_journeys": counts.get("previous_journeys", 0),
            **({"delta": delta.summary(delta_counts, counts.get("journeys", 0))} if self.config.get("delta") else {}),
        }


def clustering_config(opts: ExtractOptions) -> dict:
    """The options that decide a user's journeys, as the summary records them: a delta run must
    use the previous run's, or carried and recomputed users would be clustered differently."""
    blocks, weights = representation(opts)
    return {"strategy": opts.strategy, "strategy_params": extractor_params(opts), "centring": opts.centring,
            "statistics": opts.statistics,
            "representation": list(blocks), "log_strategy_params": log_extractor_params(opts),
            "block_weights": weights, "persistence": dataclasses.asdict(persistence_config(opts))}


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    """Add the extraction graph to ``pipeline``. Nothing is read or written until it runs."""
    opts, common = options.view_as(ExtractOptions), options.view_as(CommonOptions)
    params = extractor_params(opts)
    make_extractor(opts.strategy, **params)  # fail now, with a clear message, on a bad parameter
    log_params = log_extractor_params(opts)
    if log_params is not None:
        make_extractor(opts.strategy, **log_params)
    persistence = persistence_config(opts)
    blocks, weights = representation(opts)
    model = model_identity(opts.embedding_model)
    match = MatchConfig(opts.min_overlap, opts.min_similarity)
    delta_from = previous.extraction_folder(common.previous) if common.previous and opts.delta else None
    previous_as_of = previous.as_of(delta_from) if delta_from else None
    previous_path = previous.journeys_folder(common.previous) if common.previous and not delta_from else None
    threads = torch_threads(options)
    staging = io.join(common.out, f"_staging-{uuid.uuid4().hex[:12]}")

    validate_events = functools.partial(validate_event, window=time_window(options))
    events = (
        pipeline | "ReadEvents" >> ReadRows(common.events, numbered=True)
        | "ValidateEvents" >> beam.ParDo(_Validate("events", validate_events)).with_outputs("dead", "files", main="ok")
    )
    # With the embedding block in use, an item without a vector is a dead letter (missing_vector).
    uses_vectors = "embedding" in blocks
    validate_items = functools.partial(validate_item, require_vector=uses_vectors and not opts.item_vectors)
    items = (
        pipeline | "ReadItems" >> ReadRows(opts.items, numbered=True)
        | "ValidateItems" >> beam.ParDo(_Validate("items", validate_items)).with_outputs("dead", "files", main="ok")
    )
    catalogue_rows, vector_dead, vector_files = items.ok, [], []
    if opts.item_vectors:
        vector_rows = (
            pipeline | "ReadItemVectors" >> ReadRows(opts.item_vectors, numbered=True)
            | "ValidateItemVectors" >> beam.ParDo(_Validate("item_vectors", validate_item_vector))
            .with_outputs("dead", "files", main="ok")
        )
        attached = (
            {"item": items.ok | "KeyItemsForVectors" >> beam.Map(lambda it: (it.item_id, it)), "vector": vector_rows.ok}
            | "JoinVectors" >> beam.CoGroupByKey()
            | "AttachVectors" >> beam.FlatMap(_attach_vector, required=uses_vectors).with_outputs("dead", main="ok")
        )
        catalogue_rows = attached.ok
        vector_dead, vector_files = [vector_rows.dead, attached.dead], [vector_rows.files]
    unique_items = (
        catalogue_rows
        | "KeyItems" >> beam.Map(lambda it: (it.item_id, it))
        | "GroupItems" >> beam.GroupByKey()
        | "OneItemPerId" >> beam.FlatMap(_one_item_per_id).with_output_types(Item).with_outputs("dead", main="ok")
    )
    # Only catalogue items that some valid event refers to are embedded: a large catalogue with
    # sparse activity would otherwise pay for vectors nobody uses.
    used_ids = events.ok | "UsedIds" >> beam.Map(lambda e: (e.item_id, None))
    if delta_from:  # the items of the histories count as used: the catalogue is theirs and the new events'
        carried_vectors = pipeline | "PreviousCatalogue" >> delta.PreviousVectors(delta_from)
        carried_ids = carried_vectors | "CarriedIds" >> beam.Map(lambda kv: (kv[0], None))
        used_ids = (used_ids, carried_ids) | "AllUsedIds" >> beam.Flatten()
    used_items = (
        {"item": unique_items.ok | "KeyUniqueItems" >> beam.Map(lambda it: (it.item_id, it)),
         "used": used_ids | "DistinctUsed" >> beam.Distinct()}
        | "JoinUsed" >> beam.CoGroupByKey()
        | "KeepUsed" >> beam.FlatMap(lambda kv: list(kv[1]["item"])[:1] if list(kv[1]["used"]) else [])
        .with_output_types(Item)
    )
    embed = EmbedCatalogue(opts.embedding_model, None if opts.embed_per_event else opts.embedding_cache,
                           opts.embed_batch_size, threads["threads"], once_per_text=not opts.embed_per_event)
    # The items embedded, and the ones the catalogue statistics are computed over.
    described = unique_items.ok if opts.statistics == "catalogue" else used_items
    to_embed, carried = described, None
    if delta_from:  # only items that are new, or whose embedded content changed, are embedded
        carried = described | "CarriedVectors" >> delta.CarriedVectors(carried_vectors)
        to_embed = carried.miss
    if opts.embed_per_event:
        to_embed = (
            {"item": used_items | "KeyItemsForBaseline" >> beam.Map(lambda it: (it.item_id, it)),
             "event": events.ok | "KeyEventsByItem" >> beam.Map(lambda e: (e.item_id, e))}
            | "JoinForBaseline" >> beam.CoGroupByKey()
            | "ItemPerEvent" >> beam.FlatMap(_items_once_per_event)
        )
    embedded = to_embed | "EmbedCatalogue" >> embed
    vectors = embedded["vectors"]
    if carried is not None:
        vectors = (carried.hit, vectors) | "AllVectors" >> beam.Flatten()
    if opts.embed_per_event:
        vectors = (
            vectors
            | "KeyVectors" >> beam.Map(lambda pair: (pair[0].item_id, pair))
            | "GroupVectors" >> beam.GroupByKey()
            | "OneVectorPerItem" >> beam.Map(_first_vector)
        )

    catalogue_df = (
        unique_items.ok
        | "ItemTerms" >> beam.FlatMap(lambda it: document_terms([it]).keys())
        | "CountTerms" >> beam.combiners.Count.PerElement()
        | "CommonTerms" >> beam.Filter(lambda kv: kv[1] > 1)  # absent terms count as df=1
    )
    catalogue_size = unique_items.ok | "CountItems" >> beam.combiners.Count.Globally()

    # Computed once per run, over the items that have events (or, with --statistics catalogue, every
    # item): every user is clustered against the same statistics (recorded in the summary, with hashes).
    statistics = beam.pvalue.AsSingleton(
        vectors | "CatalogueStatistics" >> CatalogueStatistics(centre_text=opts.centring == "mean"))

    # Users go to --num_shards shards by a hash of their id; the per-user step takes a shard at a
    # time and writes its files itself (see _ExtractShard), so no dataset is held whole anywhere.
    shards = opts.num_shards
    events_by_shard = events.ok | "KeyEventsByShard" >> beam.Map(
        lambda e: (stable_shard(e.user_id, shards), packed_events.pack(e)))
    if previous_path:
        previous_journeys = (
            pipeline | "ReadPrevious" >> ReadRows(previous_path)
            | "PreviousByUser" >> beam.Map(lambda parsed: _previous_record(parsed[0]))
        )
        previous_by_shard = previous_journeys | "PreviousByShard" >> beam.Map(
            lambda kv: (stable_shard(kv[0], shards), kv))
        by_shard = {"events": events_by_shard, "previous": previous_by_shard} | "GroupByShard" >> beam.CoGroupByKey()
        previous_count = [previous_journeys | "CountPrevious" >> beam.Map(lambda _: ("previous_journeys", 1))]
    else:
        if delta_from:  # every shard is visited: one with no new events still carries its users
            every_shard = pipeline | "AllShards" >> beam.Create([(shard, None) for shard in range(shards)])
            events_by_shard = (events_by_shard, every_shard) | "EveryShard" >> beam.Flatten()
        by_shard = (
            events_by_shard
            | "GroupByShard" >> beam.GroupByKey()
            | "NoPrevious" >> beam.MapTuple(lambda shard, packed: (shard, {"events": packed, "previous": []}))
        )
        previous_count = []
    # The run's as-of time, written on the lineage rows: the latest valid event (of the previous run's
    # too, in a delta run), so reruns are identical.
    event_times = events.ok | "EventTimes" >> beam.Map(lambda e: e.ts)
    if previous_as_of is not None:
        event_times = (event_times, pipeline | "PreviousAsOf" >> beam.Create([previous_as_of])) \
            | "AllTimes" >> beam.Flatten()
    run_time = event_times | "LatestEvent" >> beam.CombineGlobally(_latest)
    extracted = (
        by_shard
        | "ExtractJourneys" >> beam.ParDo(
            _ExtractShard(staging, opts.strategy, params, persistence, model, match, blocks, weights, log_params,
                          delta_from, previous_as_of),
            catalogue=beam.pvalue.AsDict(vectors | "KeyByItem" >> beam.Map(lambda p: (p[0].item_id, p))),
            catalogue_df=beam.pvalue.AsDict(catalogue_df),
            catalogue_size=beam.pvalue.AsSingleton(catalogue_size),
            run_time=beam.pvalue.AsSingleton(run_time),
            statistics=statistics,
        ).with_outputs("dead", "counts", main="written")
    )

    dead = (
        (events.dead, items.dead, *vector_dead, unique_items.dead, extracted.dead)
        | "AllDeadLetters" >> beam.Flatten()
    )
    written_dead = (
        dead
        | "DeadToRecords" >> beam.Map(DeadLetter.to_record)
        | "WriteDeadLetters" >> WriteShards(io.join(staging, "dead_letter"), schema.DEAD_LETTER, "row",
                                            ("source", "reason", "user_id", "item_id", "row", "detail"), shards,
                                            rows_per_shard=ROWS_PER_SHARD)
    )
    written_catalogue = (
        vectors
        | "CatalogueRows" >> beam.Map(delta.catalogue_row)
        | "WriteCatalogue" >> WriteShards(io.join(staging, "catalogue"), schema.CATALOGUE, "item_id", ("item_id",),
                                          shards, rows_per_shard=ROWS_PER_SHARD)
    )
    written = (extracted.written, written_dead, written_catalogue) | "AllWritten" >> beam.Flatten()
    counts = (
        (
            extracted.counts,
            events.files,
            items.files,
            *vector_files,
            *previous_count,
            dead | "RejectReasons" >> beam.Map(lambda d: (f"rejected.{d.source}.{d.reason}", 1)),
            catalogue_size | "ItemsInCatalogue" >> beam.Map(lambda n: ("items_in_catalogue", n)),
            embedded["texts"] | "TextsEmbedded" >> beam.Map(lambda n: ("texts_embedded", n)),
            used_items | "CountUsedItems" >> beam.combiners.Count.Globally()
            | "ItemsUsed" >> beam.Map(lambda n: ("items_used", n)),
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    config = {
        "events": common.events, "items": opts.items, **clustering_config(opts), "item_vectors": opts.item_vectors,
        "embedding_model": model, "torch_threads": threads,
        "previous": common.previous, "min_overlap": match.min_overlap, "min_similarity": match.min_similarity,
        "delta": bool(delta_from), "num_shards": shards,
    }
    _ = (
        pipeline
        | "PublishTrigger" >> beam.Create([None])
        | "Publish" >> beam.ParDo(
            _PublishExtraction(common.out, staging, DATASETS, time.time(), Summarise(config), blocks=blocks,
                               weights=weights),
            written=beam.pvalue.AsList(written),
            counts=beam.pvalue.AsList(counts),
            statistics=statistics,
            run_time=beam.pvalue.AsSingleton(run_time),
        )
    )


def run(argv: list[str] | None = None, save_main_session: bool = True) -> dict:
    """Run the extraction and return the summary (also written to ``OUT/summary.json``)."""
    options = PipelineOptions(argv)
    opts, common = options.view_as(ExtractOptions), options.view_as(CommonOptions)
    for name, value in (("events", common.events), ("items", opts.items), ("out", common.out)):
        if not value:
            raise ValueError(f"--{name} is required")
    time_window(options)  # a bad --min_timestamp / --max_timestamp fails now
    settle_representation(opts, check_inputs(common.events, opts.items, opts.item_vectors))
    representation(opts)  # a bad --block_weights fails now
    MatchConfig(opts.min_overlap, opts.min_similarity)  # a clear error now on a bad threshold
    if opts.delta and not common.previous:
        raise ValueError("--delta continues from a previous run: pass it with --previous")
    if opts.delta and opts.embed_per_event:
        raise ValueError("--embed_per_event is a benchmark baseline of fresh runs; it cannot be used with --delta")
    if common.previous and opts.delta:  # refused now, before any work, if it cannot be built on
        previous.previous_extraction(common.previous, model_identity(opts.embedding_model), opts.num_shards,
                                     clustering_config(opts))
    elif common.previous:
        previous.previous_journeys(common.previous, model_identity(opts.embedding_model), common.events)
    summary = run_and_summarise(options, build, save_main_session,
                                inputs=[("--events", common.events), ("--items", opts.items),
                                        ("--previous", common.previous)])
    if "translated" not in summary:  # a dry run or a template describes the job; nothing ran
        check_some_valid(summary, common.out)
    return summary


def check_some_valid(summary: dict, out: str) -> None:
    """An InputError when no event was valid: the run wrote its (empty) datasets, its dead letters
    and summary.json, which say why each row was rejected, but it must not end as a success that
    looks like a run of nothing, nor let `journeys run` name and export nothing."""
    events = summary["events"]
    if events["used"]:
        return
    reasons = ", ".join(f"{reason} {count}" for reason, count in
                        sorted(events["rejected_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])))
    items = summary["items"]
    catalogue = "" if items["in_catalogue"] else f"; no item was valid either ({items['rejected']} of " \
        f"{items['read']} rejected)"
    raise InputError(f"no valid events: all {events['read']} rows of --events were rejected ({reasons}){catalogue}, "
                     f"so nothing was extracted; {io.join(out, 'dead_letter')} holds each row with its reason")


if __name__ == "__main__":
    from journeys import logs

    logs.configure()
    run()
