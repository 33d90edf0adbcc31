"""Beam pipeline: journeys or events -> one embedding per user, with any registered user encoder.

    read the encoder's input (journeys/ for the journey encoder, events for a sequence encoder) and
    --users (the users to encode even without records) -> key by user -> group -> the encoder checks
    and encodes each user (loaded once per worker) ->
    embeddings/ (Parquet: user_id, encoder, version, embedding) and dead_letter/ -> summary.json

Every user seen in any input ends in ``embeddings/`` or, with the reason, in ``dead_letter/``
(``users.balanced`` in the summary). A user with no records (listed in ``--users`` only) gets the
encoder's defined empty-history embedding and is counted under ``users.without_journeys`` (or
``without_events``): the extraction keeps only persistent interests, so some users have none, and
dropping them would make the evaluation silently skip the hardest users.

The encoder is chosen by name (``tuning.user_encoders``) and declares which per-user records it
reads. Events are validated as in extract (bad rows go to the dead letters with the reason); an
event whose item the sequence encoder never saw goes there too (``unknown_item``) and the user is
encoded from the rest.
"""

from __future__ import annotations

import math
import time
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from journeys import io, schema
from journeys.inputs import check_columns, check_dataset, check_has_rows
from journeys.validation import DeadLetter, validate_event
from pipelines.options import CommonOptions, run_and_summarise, time_window, torch_threads
from pipelines.transforms import Publish, ReadRows, WriteShards
from tuning.user_encoders import USER_ENCODERS, create_user_encoder

DATASETS = {"embeddings": schema.USER_EMBEDDINGS, "dead_letter": schema.DEAD_LETTER}


class EncodeOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("user encoding")
        group.add_argument("--user_encoder", default="journey", help=f"user encoder: {', '.join(USER_ENCODERS)}")
        group.add_argument("--users", default=None,
                           help="any table with a user_id column (events, a question set's questions.jsonl): "
                           "these users are encoded too, with the empty-history embedding when they have no journeys")
        group.add_argument("--centroid_dim", type=int, default=None,
                           help="journey encoder: width of the journey centroids (384)")
        group.add_argument("--half_life_days", type=float, default=None,
                           help="journey encoder: recency half-life in days (30)")
        group.add_argument("--expect_embedding_model", default=None,
                           help="journey encoder: refuse journeys embedded with another sentence encoder")
        group.add_argument("--sequence_model", default=None,
                           help="sequence encoders (sasrec, gru4rec, llama): a folder from "
                           "`journeys uqabench pretrain`")
        group.add_argument("--encode_shards", type=int, default=1, help="Parquet files of embeddings")


def encoder_options(opts: EncodeOptions, threads: int) -> dict:
    """Every encoder setting given (None = not given: each encoder refuses a given one it does not
    use) and the worker's torch threads (a runtime setting; encoders without torch ignore it)."""
    return {"centroid_dim": opts.centroid_dim, "half_life_days": opts.half_life_days,
            "embedding_model": opts.expect_embedding_model, "sequence_model": opts.sequence_model,
            "torch_threads": threads}


def _user_id(value) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


class _KeyByUser(beam.DoFn):
    """Parsed rows -> (user_id, (kind, row)), or a dead letter for a row with no usable user id."""

    def __init__(self, source: str):
        self.source = source

    def process(self, parsed):
        row, problem = parsed
        if row is None:
            yield beam.pvalue.TaggedOutput("dead", DeadLetter(self.source, "malformed_row", problem).to_record())
            return
        user_id = _user_id(row.get("user_id"))
        if user_id is None:
            yield beam.pvalue.TaggedOutput("dead", DeadLetter(
                self.source, "missing_user_id", f"user_id must be a non-empty string or an integer, got "
                f"{row.get('user_id')!r}", {"journey_id": row.get("journey_id")} if self.source == "journeys"
                else row).to_record())
            return
        # Tagged like the dead letters: Beam would otherwise infer a union type and refuse the grouping.
        yield beam.pvalue.TaggedOutput("keyed", (user_id, (self.source, row if self.source == "journeys" else None)))


class _KeyEvent(beam.DoFn):
    """Parsed event rows -> (user_id, ("events", {item_id, ts})), or a dead letter: an invalid row
    (the reasons of extract) or an item the sequence encoder cannot embed (``unknown_item``)."""

    def __init__(self, encoder: str, options: dict, window):
        self.encoder_name, self.options, self.window = encoder, options, window
        self.known = None

    def setup(self):
        self.known = create_user_encoder(self.encoder_name, **self.options).knows

    def process(self, parsed):
        row, problem, file, number = parsed
        if row is None:
            yield beam.pvalue.TaggedOutput("dead", DeadLetter("events", "malformed_row", problem).to_record())
            return
        event, dead = validate_event(row, self.window)
        if dead is not None:
            yield beam.pvalue.TaggedOutput("dead", {**dead.to_record(),
                                                    "detail": f"{file} row {number}: {dead.detail}"})
        elif not self.known(event.item_id):
            yield beam.pvalue.TaggedOutput("dead", DeadLetter(
                "events", "unknown_item", f"item {event.item_id} is not in the {self.encoder_name} encoder's "
                "catalogue (pre-train it on this catalogue)", row, event.user_id, event.item_id).to_record())
        else:
            yield beam.pvalue.TaggedOutput("keyed", (event.user_id, ("events", {"item_id": event.item_id,
                                                                                "ts": event.ts})))


class _EncodeUser(beam.DoFn):
    """One user's records -> an embedding row, or one dead letter per problem (the user is not
    encoded from part of their journeys: a partial embedding would look complete)."""

    def __init__(self, encoder: str, options: dict):
        self.encoder_name, self.options = encoder, options
        self.encoder = None

    def setup(self):
        self.encoder = create_user_encoder(self.encoder_name, **self.options)

    def process(self, element):
        user_id, tagged = element
        kind = self.encoder.input
        records = [row for source, row in tagged if source == kind]
        if kind == "journeys":
            records.sort(key=lambda r: str(r.get("journey_id")))
        problems = self.encoder.problems(records)
        if problems:
            ids = [r.get("journey_id") for r in records] if kind == "journeys" else [r["item_id"] for r in records]
            for reason, detail in problems:
                yield beam.pvalue.TaggedOutput("dead", DeadLetter(
                    kind, reason, detail, {"journey_ids" if kind == "journeys" else "item_ids": ids},
                    user_id).to_record())
            yield beam.pvalue.TaggedOutput("count", ("failed", 1))
            return
        yield {"user_id": user_id, "encoder": self.encoder.name, "version": self.encoder.version,
               "embedding": self.encoder.encode(records).tolist()}
        yield beam.pvalue.TaggedOutput("count", (f"with_{kind}" if records else f"without_{kind}", 1))


class _Summarise:
    def __init__(self, config: dict, width: int, version: str, kind: str):
        self.config, self.width, self.version, self.kind = config, width, version, kind

    def __call__(self, counts: dict[str, int]) -> dict:
        kind = self.kind
        users = {"read": counts.get("users", 0), "encoded": counts.get("encoded", 0),
                 f"with_{kind}": counts.get(f"with_{kind}", 0),
                 f"without_{kind}": counts.get(f"without_{kind}", 0), "failed": counts.get("failed", 0)}
        return {
            "schema_version": schema.SCHEMA_VERSION, "config": self.config,
            "encoder": {"name": self.config["encoder"], "version": self.version, "width": self.width},
            "users": {**users, "balanced": users["read"] == users["encoded"] + users["failed"]},
            f"{kind}_read": counts.get(kind, 0),
            "rows_rejected": counts.get("rejected_rows", 0),
        }


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    opts, common = options.view_as(EncodeOptions), options.view_as(CommonOptions)
    staging = io.join(common.out, f"_staging-{uuid.uuid4().hex[:12]}")
    window = time_window(options)
    threads = torch_threads(options)
    options = encoder_options(opts, threads["threads"])
    encoder = create_user_encoder(opts.user_encoder, **options)
    kind = encoder.input
    if kind == "events":
        parsed = pipeline | "Read_events" >> ReadRows(common.events, numbered=True)
        rows = parsed | "Key_events" >> beam.ParDo(_KeyEvent(opts.user_encoder, options, window)).with_outputs(
            "dead", "keyed")
    else:
        parsed = pipeline | "Read_journeys" >> ReadRows(common.journeys)
        rows = parsed | "Key_journeys" >> beam.ParDo(_KeyByUser("journeys")).with_outputs("dead", "keyed")
    keyed, rejected = [rows.keyed], [rows.dead]
    if opts.users:
        parsed = pipeline | "Read_users" >> ReadRows(opts.users)
        rows = parsed | "Key_users" >> beam.ParDo(_KeyByUser("users")).with_outputs("dead", "keyed")
        keyed.append(rows.keyed)
        rejected.append(rows.dead)
    grouped = tuple(keyed) | "AllKeyed" >> beam.Flatten() | "GroupByUser" >> beam.GroupByKey()
    encoded = grouped | "Encode" >> beam.ParDo(
        _EncodeUser(opts.user_encoder, options)).with_outputs("dead", "count",
                                                                                             main="embeddings")
    dead = (*rejected, encoded.dead) | "AllDead" >> beam.Flatten()
    written = (
        (
            encoded.embeddings | "WriteEmbeddings" >> WriteShards(
                io.join(staging, "embeddings"), schema.USER_EMBEDDINGS, "user_id", ("user_id",), opts.encode_shards),
            dead | "WriteDeadLetters" >> WriteShards(io.join(staging, "dead_letter"), schema.DEAD_LETTER, "user_id",
                                                     ("user_id", "reason", "row"), 1),
        )
        | "AllWritten" >> beam.Flatten()
    )
    records_read = keyed[0] | "CountRecords" >> beam.Map(lambda _: (kind, 1))
    counts = (
        (
            grouped | "CountUsers" >> beam.Map(lambda _: ("users", 1)),
            encoded.embeddings | "CountEncoded" >> beam.Map(lambda _: ("encoded", 1)),
            encoded.count,
            records_read,
            tuple(rejected) | "AllRejected" >> beam.Flatten() | "CountRejected" >> beam.Map(
                lambda _: ("rejected_rows", 1)),
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    config = {kind: getattr(common, kind), "users": opts.users, "encoder": opts.user_encoder, **encoder.config_dict(),
              "torch_threads": threads}
    _ = (
        pipeline
        | "PublishTrigger" >> beam.Create([None])
        | "Publish" >> beam.ParDo(Publish(common.out, staging, DATASETS, time.time(),
                                          _Summarise(config, encoder.width, encoder.version, kind)),
                                  written=beam.pvalue.AsList(written), counts=beam.pvalue.AsList(counts))
    )


def run(argv: list[str] | None = None, save_main_session: bool = True) -> dict:
    """Encode every user and return the summary (also written, last, to ``OUT/summary.json``)."""
    options = PipelineOptions(argv)
    opts, common = options.view_as(EncodeOptions), options.view_as(CommonOptions)
    if opts.encode_shards < 1:
        raise ValueError("--encode_shards must be at least 1")
    # An unknown encoder, a wrong option or a missing model fails here, with the destination untouched.
    encoder = create_user_encoder(opts.user_encoder, **encoder_options(opts, torch_threads(options)["threads"]))
    kind = encoder.input
    for name, value in ((kind, getattr(common, kind)), ("out", common.out)):
        if not value:
            raise ValueError(f"--{name} is required: the {opts.user_encoder} encoder reads {kind}")
    unread = "events" if kind == "journeys" else "journeys"
    if getattr(common, unread):
        raise ValueError(f"--{unread} does not apply to the {opts.user_encoder} encoder: it reads {kind} "
                         f"(--{kind}); leave --{unread} out")
    time_window(options)  # a bad --min_timestamp / --max_timestamp fails now
    if kind == "journeys":
        check_dataset(common.journeys, schema.JOURNEYS, "journeys",
                      "pass the journeys/ folder written by `journeys extract`")
    else:
        check_columns(common.events, ("user_id", "item_id", "timestamp"), "events")
        check_has_rows(common.events, "events")
    if opts.users:
        check_columns(opts.users, ("user_id",), "users")
    return run_and_summarise(options, build, save_main_session, inputs=[
        (f"--{kind}", getattr(common, kind)), ("--users", opts.users), ("--sequence_model", opts.sequence_model)])
