"""Beam building blocks shared by the pipelines: read rows, write Parquet shards, publish outputs.

Outputs are written under a staging folder and moved into place by one final step, after every
shard exists, so an interrupted run never leaves a dataset that looks complete. ``summary.json`` is
written last: its presence means the run finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa

from journeys import io
from journeys.inputs import describe_dataset

log = logging.getLogger(__name__)


class ReadRows(beam.PTransform):
    """Every row of every data file behind ``path`` as ``(row_dict, None)``, or ``(None, why)`` for a
    line that could not be parsed. With ``numbered``, ``(row, why, file, number)``: where each row
    came from. Files are listed inside the pipeline, on a worker."""

    def __init__(self, path: str, numbered: bool = False):
        super().__init__()
        self.path, self.numbered = path, numbered

    def expand(self, pbegin):
        return (
            pbegin
            | "Path" >> beam.Create([self.path])
            | "ListFiles" >> beam.FlatMap(io.list_input_files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Parse" >> beam.FlatMap(_numbered_rows if self.numbered else io.iter_rows)
        )


def own_row(parsed: tuple) -> dict:
    """The row of a dataset this tool wrote (``ReadRows``' ``(row, why)``). A row that does not parse
    there means the dataset is damaged: the run stops with the reason instead of carrying a None on.
    Typed ``dict`` so that Beam's type check sees rows, not ``Optional`` rows, downstream."""
    row, problem = parsed[0], parsed[1]
    if row is None:
        raise ValueError(f"a row of a dataset written by journeys could not be read ({problem}): "
                         "the dataset is damaged; run the step that wrote it again")
    return row


def _numbered_rows(file: str):
    for row, problem, number in io.iter_numbered_rows(file):
        yield row, problem, file, number


def stable_shard(key: str, shards: int) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % shards


def sort_key(fields: tuple[str, ...]):
    """How rows are ordered inside a shard file (None sorts first, as an empty string)."""
    return lambda row: tuple("" if row[f] is None else row[f] for f in fields)


_WRITERS = {"parquet": io.write_table, "jsonl": io.write_jsonl}


class _WriteShard(beam.DoFn):
    def __init__(self, folder: str, schema: pa.Schema, sort_fields: tuple[str, ...], fmt: str = "parquet"):
        self.folder, self.schema, self.sort_fields, self.fmt = folder, schema, sort_fields, fmt

    def process(self, element):
        shard, records = element
        rows = sorted(records, key=sort_key(self.sort_fields))
        path = io.join(self.folder, f"part-{shard:05d}.{self.fmt}")
        # Built as an Arrow table in both formats, so JSONL rows are checked against the schema too.
        # Yields {"path", "size", "sha256"}: hashed while written, recorded by Publish.
        yield _WRITERS[self.fmt](pa.Table.from_pylist(rows, schema=self.schema), path)


ROWS_PER_SHARD = 20_000  # a writer holds one shard's rows at once: this bounds its memory


class WriteShards(beam.PTransform):
    """Write dict records as ``part-NNNNN.parquet`` (or ``.jsonl``) files under ``folder``. Records go
    to shards by a hash of ``shard_field`` and are sorted inside each shard, so reruns write identical
    files. There are ``shards`` files; with ``rows_per_shard``, more for a large dataset: enough that
    none holds more than about that many rows (counted on the dataset, so reruns shard the same way)."""

    def __init__(self, folder: str, schema: pa.Schema, shard_field: str, sort_fields: tuple[str, ...], shards: int,
                 fmt: str = "parquet", rows_per_shard: int | None = None):
        super().__init__()
        if fmt not in _WRITERS:
            raise ValueError(f"unknown output format '{fmt}': choose one of {', '.join(_WRITERS)}")
        self.folder, self.schema, self.shard_field = folder, schema, shard_field
        self.sort_fields, self.shards, self.fmt = sort_fields, shards, fmt
        self.rows_per_shard = rows_per_shard

    def expand(self, records):
        field, least, per_shard = self.shard_field, self.shards, self.rows_per_shard
        if per_shard is None:  # a fixed count: no counting pass
            shard = beam.Map(lambda r: (stable_shard(str(r[field]), least), r))
        else:
            shards = (
                records
                | "Count" >> beam.combiners.Count.Globally()
                | "Shards" >> beam.Map(lambda rows: max(least, -(-rows // per_shard)))
            )
            shard = beam.Map(lambda r, n: (stable_shard(str(r[field]), n), r), n=beam.pvalue.AsSingleton(shards))
        return (
            records
            | "Shard" >> shard
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShard(self.folder, self.schema, self.sort_fields, self.fmt))
        )


def merge_counts(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for name, count in pairs:
        totals[name] = totals.get(name, 0) + count
    return dict(sorted(totals.items()))


def write_empty_parquet(schema: pa.Schema, folder: str) -> dict:
    """An empty result is still a readable dataset with the right columns."""
    return io.write_table(schema.empty_table(), io.join(folder, "part-00000.parquet"))


class Publish(beam.DoFn):
    """Move staged datasets into place and write the summary. Runs once, after all writes, because
    it takes every written file as a side input: ``{"path", "size", "sha256"}``, as the writers
    hashed it while writing, so that the summary records every file's size and hash without a
    second read.

    The previous run's marker (``summary.json`` by default) is removed before anything is moved and
    the new one is written last, so a run that dies while publishing leaves no marker beside a mix
    of old and new datasets."""

    def __init__(self, out: str, staging: str, datasets: dict[str, pa.Schema], started_at: float, summarise,
                 marker: str = "summary.json", write_empty=write_empty_parquet):
        self.out, self.staging, self.datasets = out, staging, datasets
        self.started_at, self.summarise = started_at, summarise
        self.marker, self.write_empty = marker, write_empty

    def process(self, _, written: list[dict], counts: list[tuple[str, int]]):
        yield self.publish(written, self.summarise(merge_counts(counts)))

    def publish(self, written: list[dict], summary: dict) -> dict:
        """Move the staged datasets into place, then write ``summary`` as the marker; returns it."""
        marker = io.join(self.out, self.marker)
        io.remove(marker)
        fingerprints = {}
        for name, schema in self.datasets.items():
            staged = io.join(self.staging, name)
            mine = [w for w in written if w["path"].startswith(staged + "/")]
            if not mine:
                mine = [self.write_empty(schema, staged)]
            # Paths inside the dataset, the same once it is moved into place.
            fingerprints[name] = {w["path"][len(staged) + 1:]: w for w in mine}
            io.move_folder(staged, io.join(self.out, name))
        io.remove(self.staging)
        # What a later step checks its input against: a folder that lost or gained a file since, or
        # a file whose size or bytes changed, does not match (journeys.inputs.check_complete).
        summary["outputs"] = {name: describe_dataset(io.join(self.out, name), fingerprints[name])
                              for name in self.datasets}
        summary["wall_seconds"] = round(time.time() - self.started_at, 2)
        io.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", marker)
        log.info("wrote %s", marker)
        return summary
