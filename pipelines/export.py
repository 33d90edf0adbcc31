"""Beam pipeline: named journeys -> journey labels, the flat table recommender teams consume.

    check and verify the inputs up front (every file's size and SHA-256 against its step's summary)
    -> read named/ -> one label per journey (plus, with --previous and --lineage, one "ended" label
    per previous journey that did not continue) -> write OUT/journey_labels/ (Parquet or JSONL) and
    OUT/lineage/ (with --lineage) -> publish -> OUT/_manifest.json (with the inputs' hashes as
    verified, and each written file's size and hash: what `journeys verify` checks)

Why a Beam pipeline and not a few lines of pyarrow: it is the same read / write shards / publish
path as extract and name (staging folder, folders moved into place, the marker written last), it
runs unchanged on Dataflow beside them, and it does not need the whole named dataset in one
process's memory. The per-row work is a plain function, ``to_label``.

``OUT/_manifest.json`` is written last, after the data is in place, and the previous one is removed
before anything is replaced: consumers must check that it exists before reading ``journey_labels/``.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import posixpath
import time
import uuid
from importlib import metadata

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from journeys import integrity, io, previous, schema
from journeys.inputs import InputError, check_dataset
from journeys.lineage import ENDED, ENDED_STATUS, MERGED, RELATIONS, STATUSES
from pipelines.options import CommonOptions, run_and_summarise
from pipelines.transforms import Publish, ReadRows, WriteShards, merge_counts, own_row, write_empty_parquet

DATASET = "journey_labels"
LINEAGE = "lineage"
MANIFEST = "_manifest.json"
FORMATS = ("parquet", "jsonl")
SORT = ("user_id", "first_seen", "journey_id")


class ExportOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("journey export")
        group.add_argument("--named", help="the named/ dataset written by the name step")
        group.add_argument("--format", default="parquet", choices=FORMATS, help="output file format")
        group.add_argument("--include_centroid", action="store_true", help="add each journey's centroid")
        group.add_argument("--top_items", type=int, default=20, help="most item ids kept per journey")
        group.add_argument("--export_shards", type=int, default=1,
                           help="files to write; 1 keeps the whole export in one sorted file")
        group.add_argument("--lineage", default=None,
                           help="the lineage/ dataset written by extract: exported beside the labels")


def config_of(opts: ExportOptions) -> dict:
    """What shapes the output (the input is identified by its fingerprints, not its path)."""
    return {"format": opts.format, "include_centroid": bool(opts.include_centroid), "top_items": opts.top_items,
            "shards": opts.export_shards, "schema": DATASET, "schema_version": schema.SCHEMA_VERSION}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def to_label(row: dict, top_items: int, include_centroid: bool) -> dict:
    """One named journey -> one label row. ``top_item_ids`` keeps the journey's order (the user's
    first interaction with each item), so the first ``top_items`` are the journey's oldest items."""
    label = {
        "user_id": row["user_id"], "journey_id": row["journey_id"], "name": row["name"],
        "strategy": row["naming_strategy"], "model": row["naming_model"], "grounding": row["grounding"],
        "first_seen": row["first_seen"], "last_seen": row["last_ts"], "num_events": row["num_events"],
        "top_item_ids": list(row["item_ids"])[:top_items],
        "representative_titles": list(row["representative_titles"]),
        "status": row["status"], "version": row["version"],
    }
    if include_centroid:
        label["centroid"] = row["centroid"]
    return label


def _ended_labels(element, columns: list[str]):
    """(journey_id, {"gone": [relation], "label": [previous label]}) -> the previous label, marked ended,
    for a previous journey that ended or merged into another one."""
    _, grouped = element
    gone, labels = list(grouped["gone"]), list(grouped["label"])
    if gone and labels:
        yield {**{c: labels[0].get(c) for c in columns}, "status": ENDED_STATUS}


def check_named(path: str) -> list[dict] | None:
    """The named dataset's verified fingerprints, or an InputError naming what is wrong (before
    anything is written)."""
    return check_dataset(path, schema.NAMED_JOURNEYS, "named journeys",
                         "pass the named/ folder written by `journeys name`")


def check_inputs(named: str, lineage: str | None, previous_run: str | None, include_centroid: bool) -> dict:
    """Every input checked and verified before any work; returns each one's file fingerprints, as
    the manifest records them (``{"path", "size", "sha256"}``, paths inside the input folder)."""
    verified = {"named": check_named(named) or _fingerprints(named), "lineage": [], "previous": []}
    if lineage:
        verified["lineage"] = check_dataset(lineage, schema.LINEAGE, "lineage",
                                            "pass the lineage/ folder written by `journeys extract`") \
            or _fingerprints(lineage)
    if previous_run:
        if not lineage:
            raise InputError("--previous needs --lineage: the lineage/ folder of the extraction that used it")
        labels, verified["previous"] = previous.checked_labels(previous_run)
        if include_centroid and "centroid" not in io.read_columns(io.list_input_files(labels)[0]):
            raise InputError(f"--previous '{previous_run}' has no centroids: export without --include_centroid")
    return verified


def _fingerprints(path: str) -> list[dict]:
    """Fingerprints of an input given as one file or a glob (no summary to verify it against)."""
    return [fingerprint(file, path) for file in io.list_input_files(path)]


def relative_to(file: str, base: str) -> str:
    """``file``'s path inside the input folder (its name when the input is a single file)."""
    _, folder = io.url_to_fs(base)
    _, stripped = io.url_to_fs(file)
    folder = folder.rstrip("/")
    return stripped[len(folder) + 1:] if stripped.startswith(folder + "/") else posixpath.basename(stripped)


def fingerprint(file: str, base: str) -> dict:
    fs, stripped = io.url_to_fs(file)
    with fs.open(stripped, "rb") as handle:
        return {"path": relative_to(file, base), **integrity.fingerprint_handle(handle)}


def write_empty_jsonl(_schema, folder: str) -> dict:
    return io.write_text("", io.join(folder, "part-00000.jsonl"))


def tool_version() -> str:
    try:
        return metadata.version("journeys")
    except metadata.PackageNotFoundError:
        return "unknown"


class _PublishExport(Publish):
    """Publish, with the manifest (counts, config, the inputs' fingerprints as verified) as the marker."""

    def __init__(self, out: str, staging: str, schema_, started_at: float, config: dict, named: str,
                 lineage: str | None, previous_labels: str | None, verified: dict):
        write_empty = write_empty_jsonl if config["format"] == "jsonl" else write_empty_parquet
        datasets = {DATASET: schema_, **({LINEAGE: schema.LINEAGE} if lineage else {})}
        super().__init__(out, staging, datasets, started_at, None, marker=MANIFEST, write_empty=write_empty)
        self.config, self.named, self.columns = config, named, schema_.names
        self.lineage, self.previous_labels, self.verified = lineage, previous_labels, verified

    def process(self, _, written: list[dict], counts: list[tuple[str, int]]):
        totals = merge_counts(counts)
        rows, read, ended = totals.get("rows", 0), totals.get("read", 0), totals.get("ended", 0)
        manifest = {
            "schema": {"name": DATASET, "version": schema.SCHEMA_VERSION, "columns": self.columns},
            "format": self.config["format"],
            "data": DATASET,
            "rows": rows,
            "users": totals.get("users", 0),
            "input_rows": read,
            "ended_rows": ended,  # labels of previous journeys that ended (with --previous)
            "balanced": rows == read + ended,
            "status": {s: totals.get(f"status.{s}", 0) for s in STATUSES},
            "config": self.config,
            "config_sha256": config_hash(self.config),
            # Each input file's size and SHA-256 as verified against its step's summary before any work.
            "input": {"named": self.named, "files": _by_path(self.verified["named"]),
                      "lineage": self.lineage, "lineage_files": _by_path(self.verified["lineage"]),
                      "previous": self.previous_labels, "previous_files": _by_path(self.verified["previous"])},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tool": {"name": "journeys", "version": tool_version()},
        }
        if self.lineage:
            manifest["lineage"] = {
                "data": LINEAGE, "rows": totals.get("lineage_rows", 0),
                "schema": {"name": LINEAGE, "version": schema.SCHEMA_VERSION, "columns": schema.LINEAGE.names},
                "by_relation": {r: totals.get(f"lineage.{r}", 0) for r in RELATIONS},
            }
        yield self.publish(written, manifest)


def _by_path(fingerprints: list[dict]) -> list[dict]:
    return sorted(({"path": f["path"], "size": f["size"], "sha256": f["sha256"]} for f in fingerprints),
                  key=lambda f: f["path"])


def build(pipeline: beam.Pipeline, options: PipelineOptions, verified: dict | None = None) -> None:
    """The export graph; ``verified``: the inputs' fingerprints from ``check_inputs`` (checked here
    when not given)."""
    opts, common = options.view_as(ExportOptions), options.view_as(CommonOptions)
    if verified is None:
        verified = check_inputs(opts.named, opts.lineage, common.previous, bool(opts.include_centroid))
    staging = io.join(common.out, f"_staging-{uuid.uuid4().hex[:12]}")
    out_schema = schema.journey_labels(opts.include_centroid)
    top_items, include_centroid, named_path = opts.top_items, bool(opts.include_centroid), opts.named
    named = pipeline | "ReadNamed" >> ReadRows(named_path) | "Rows" >> beam.Map(own_row)
    current = named | "ToLabels" >> beam.Map(to_label, top_items, include_centroid)
    lineage_path = opts.lineage
    previous_path = previous.labels_folder(common.previous) if common.previous else None
    extra_counts, lineage_written = [], []
    if lineage_path:
        lineage = pipeline | "ReadLineage" >> ReadRows(lineage_path) | "LineageRows" >> beam.Map(own_row)
        lineage_written = [lineage | "WriteLineage" >> WriteShards(
            io.join(staging, LINEAGE), schema.LINEAGE, "user_id", ("user_id", "relation", "old_id", "new_id"),
            opts.export_shards, opts.format)]
        extra_counts += [lineage | "CountLineage" >> beam.Map(lambda _: ("lineage_rows", 1)),
                         lineage | "CountRelations" >> beam.Map(lambda r: (f"lineage.{r['relation']}", 1))]
    if previous_path:
        gone = (
            lineage
            | "GoneJourneys" >> beam.Filter(lambda r: r["relation"] in (ENDED, MERGED))
            | "KeyGone" >> beam.Map(lambda r: (r["old_id"], r["relation"]))
        )
        previous_labels = (
            pipeline | "ReadPrevious" >> ReadRows(previous_path)
            | "PreviousLabels" >> beam.Map(lambda parsed: (parsed[0]["journey_id"], parsed[0]))
        )
        ended = (
            {"gone": gone, "label": previous_labels}
            | "JoinGone" >> beam.CoGroupByKey()
            | "EndedLabels" >> beam.FlatMap(_ended_labels, out_schema.names)
        )
        extra_counts.append(ended | "CountEnded" >> beam.Map(lambda _: ("ended", 1)))
        labels = (current, ended) | "AllLabels" >> beam.Flatten()
    else:
        labels = current
    written = (
        (labels | "WriteLabels" >> WriteShards(io.join(staging, DATASET), out_schema, "user_id", SORT,
                                               opts.export_shards, opts.format), *lineage_written)
        | "AllWritten" >> beam.Flatten()
    )
    users = (
        labels
        | "UserIds" >> beam.Map(lambda label: label["user_id"])
        | "DistinctUsers" >> beam.Distinct()
        | "CountUsers" >> beam.combiners.Count.Globally()
        | "UsersCount" >> beam.Map(lambda n: ("users", n))
    )
    counts = (
        (
            named | "CountRead" >> beam.Map(lambda _: ("read", 1)),
            labels | "CountRows" >> beam.Map(lambda _: ("rows", 1)),
            labels | "CountStatus" >> beam.Map(lambda label: (f"status.{label['status']}", 1)),
            users,
            *extra_counts,
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    publish = _PublishExport(common.out, staging, out_schema, time.time(), config_of(opts), named_path,
                             lineage_path, previous_path, verified)
    _ = (
        pipeline
        | "PublishTrigger" >> beam.Create([None])
        | "Publish" >> beam.ParDo(publish, written=beam.pvalue.AsList(written), counts=beam.pvalue.AsList(counts))
    )


def run(argv: list[str] | None = None, save_main_session: bool = True, inputs_written: bool = True) -> dict:
    """Export the labels and return the manifest (also written, last, to ``OUT/_manifest.json``).
    ``inputs_written=False``: --named and --lineage are the outputs of steps that a dry run only
    translated (``journeys run --dry_run true``), so they are not there to check."""
    options = PipelineOptions(argv)
    opts, common = options.view_as(ExportOptions), options.view_as(CommonOptions)
    for name, value in (("named", opts.named), ("out", common.out)):
        if not value:
            raise ValueError(f"--{name} is required")
    if opts.top_items < 1 or opts.export_shards < 1:
        raise ValueError("--top_items and --export_shards must be at least 1")
    # A clear error now, with the destination untouched; the verified hashes go into the manifest.
    # After a dry run of `journeys run` the earlier steps were only translated: nothing to verify yet.
    verified = (check_inputs(opts.named, opts.lineage, common.previous, bool(opts.include_centroid))
                if inputs_written else {"named": [], "lineage": [], "previous": []})
    return run_and_summarise(options, functools.partial(build, verified=verified), save_main_session, marker=MANIFEST,
                             inputs=[("--named", opts.named), ("--lineage", opts.lineage),
                                     ("--previous", common.previous)])


if __name__ == "__main__":
    from journeys import logs

    logs.configure()
    run()
