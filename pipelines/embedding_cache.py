"""The item-embedding cache: Parquet files of (content key, vector), one folder per model.

The key hashes the item id with the text that was embedded (``Item.content_key``), so an edited
title gets a fresh vector and a rerun over the same catalogue embeds nothing. New vectors are added
as new files named by a hash of their keys; nothing is rewritten, so concurrent runs cannot corrupt
the cache.
"""

from __future__ import annotations

import hashlib
import re

import apache_beam as beam
import numpy as np
import pyarrow as pa

from journeys import io, schema
from journeys.embedding import model_identity


def model_folder(cache: str, model_name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_identity(model_name)).strip("_")
    digest = hashlib.sha1(model_identity(model_name).encode()).hexdigest()[:8]
    return io.join(cache, f"{slug}-{digest}")


def _cached_files(folder: str) -> list[str]:
    try:
        return io.list_input_files(folder)
    except FileNotFoundError:
        return []


def _read_file(path: str):
    table = io.read_table(path)
    schema.check_version(table.schema, "embedding_cache", path)
    for key, vector in zip(table.column("key").to_pylist(), table.column("vector").to_numpy(zero_copy_only=False)):
        yield key, np.asarray(vector, dtype=np.float32)


class ReadEmbeddingCache(beam.PTransform):
    def __init__(self, cache: str, model_name: str):
        super().__init__()
        self.folder = model_folder(cache, model_name)

    def expand(self, pbegin):
        return (
            pbegin
            | "CacheFolder" >> beam.Create([self.folder])
            | "ListCacheFiles" >> beam.FlatMap(_cached_files)
            | "ReadCacheFile" >> beam.FlatMap(_read_file)
        )


class _WriteCacheFile(beam.DoFn):
    def __init__(self, folder: str):
        self.folder = folder

    def process(self, element):
        _, pairs = element
        pairs = sorted(pairs, key=lambda kv: kv[0])
        keys = [k for k, _ in pairs]
        name = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:20]
        table = pa.table(
            {"key": keys, "vector": [v.tolist() for _, v in pairs]}, schema=schema.EMBEDDING_CACHE
        )
        io.write_table(table, io.join(self.folder, f"{name}.parquet"))
        yield len(keys)


class WriteEmbeddingCache(beam.PTransform):
    """(Item, vector) -> new cache files, in a few files per run (grouped by a key prefix)."""

    def __init__(self, cache: str, model_name: str, files: int = 8):
        super().__init__()
        self.folder, self.files = model_folder(cache, model_name), files

    def expand(self, pairs):
        files = self.files
        return (
            pairs
            | "CacheKey" >> beam.Map(lambda p: (int(p[0].content_key()[:8], 16) % files, (p[0].content_key(), p[1])))
            | "GroupCacheFile" >> beam.GroupByKey()
            | "WriteCacheFile" >> beam.ParDo(_WriteCacheFile(self.folder))
        )
