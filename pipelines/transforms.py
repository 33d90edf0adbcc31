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

log = logging.getLogger(__name__)


class ReadRows(beam.PTransform):
    """Every row of every data file behind ``path`` as ``(row_dict, None)``, or ``(None, why)`` for a
    line that could not be parsed. Files are listed inside the pipeline, on a worker."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, pbegin):
        return (
            pbegin
            | "Path" >> beam.Create([self.path])
            | "ListFiles" >> beam.FlatMap(io.list_input_files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Parse" >> beam.FlatMap(io.iter_rows)
        )


def _stable_shard(key: str, shards: int) -> int:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % shards


class _WriteShard(beam.DoFn):
    def __init__(self, folder: str, schema: pa.Schema, sort_fields: tuple[str, ...]):
        self.folder, self.schema, self.sort_fields = folder, schema, sort_fields

    def process(self, element):
        shard, records = element
        rows = sorted(records, key=lambda r: tuple("" if r[f] is None else r[f] for f in self.sort_fields))
        path = io.join(self.folder, f"part-{shard:05d}.parquet")
        io.write_table(pa.Table.from_pylist(rows, schema=self.schema), path)
        yield path


class WriteShards(beam.PTransform):
    """Write dict records as ``part-NNNNN.parquet`` files under ``folder``. Records go to shards by a
    hash of ``shard_field`` and are sorted inside each shard, so reruns write identical files."""

    def __init__(self, folder: str, schema: pa.Schema, shard_field: str, sort_fields: tuple[str, ...], shards: int):
        super().__init__()
        self.folder, self.schema, self.shard_field = folder, schema, shard_field
        self.sort_fields, self.shards = sort_fields, shards

    def expand(self, records):
        field, shards = self.shard_field, self.shards
        return (
            records
            | "Shard" >> beam.Map(lambda r: (_stable_shard(str(r[field]), shards), r))
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShard(self.folder, self.schema, self.sort_fields))
        )


def merge_counts(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for name, count in pairs:
        totals[name] = totals.get(name, 0) + count
    return dict(sorted(totals.items()))


class Publish(beam.DoFn):
    """Move staged datasets into place and write the summary. Runs once, after all writes, because
    it takes every written path as a side input."""

    def __init__(self, out: str, staging: str, datasets: dict[str, pa.Schema], started_at: float, summarise):
        self.out, self.staging, self.datasets = out, staging, datasets
        self.started_at, self.summarise = started_at, summarise

    def process(self, _, written: list[str], counts: list[tuple[str, int]]):
        for name, schema in self.datasets.items():
            staged = io.join(self.staging, name)
            if not any(p.startswith(staged + "/") for p in written):
                # An empty result is still a readable dataset with the right columns.
                io.write_table(schema.empty_table(), io.join(staged, "part-00000.parquet"))
            io.move_folder(staged, io.join(self.out, name))
        io.remove(self.staging)
        summary = self.summarise(merge_counts(counts))
        summary["wall_seconds"] = round(time.time() - self.started_at, 2)
        io.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", io.join(self.out, "summary.json"))
        log.info("wrote %s", io.join(self.out, "summary.json"))
        yield summary
