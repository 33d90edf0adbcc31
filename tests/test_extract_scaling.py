"""What keeps extraction fast and its memory bounded: torch threads that fill the machine without
oversubscribing it, each distinct text embedded once, and writers that never hold a whole dataset."""

import glob

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from journeys import io
from journeys.embedding import Embedder, embed_items
from journeys.model import Event, Item
from pipelines import extract, packed_events
from pipelines.options import torch_threads, usable_cores
from pipelines.transforms import WriteShards


@pytest.fixture
def no_thread_env(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_auto_threads_share_the_cores_among_local_workers(no_thread_env):
    cores = usable_cores()
    one = torch_threads(PipelineOptions([]))
    assert one["threads"] == cores and one["workers"] == 1 and one["reason"].startswith("auto")
    two = torch_threads(PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"]))
    assert two["workers"] == 2 and two["threads"] == max(1, cores // 2)
    assert two["threads"] * two["workers"] <= max(cores, 2)


def test_auto_threads_are_one_on_dataflow_and_follow_omp_num_threads_locally(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    remote = torch_threads(PipelineOptions(["--runner", "DataflowRunner"]))
    assert remote["threads"] == 1 and "DataflowRunner" in remote["reason"]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert torch_threads(PipelineOptions([]))["threads"] == 3


def test_a_given_thread_count_wins_and_a_negative_one_is_refused(no_thread_env):
    assert torch_threads(PipelineOptions(["--torch_threads", "5"])) | {"cores": None} == {
        "threads": 5, "workers": 1, "cores": None, "reason": "--torch_threads"}
    with pytest.raises(ValueError, match="torch_threads"):
        torch_threads(PipelineOptions(["--torch_threads", "-1"]))


def _write(records, folder, least, per_shard):
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        _ = (pipeline | beam.Create(records)
             | WriteShards(str(folder), pa.schema([("user_id", pa.string()), ("n", pa.int64())]), "user_id",
                           ("user_id",), least, rows_per_shard=per_shard))
    return sorted(glob.glob(f"{folder}/*.parquet"))


def test_a_large_dataset_gets_more_shards_and_reruns_write_the_same_files(tmp_path):
    records = [{"user_id": f"u{n:03d}", "n": n} for n in range(50)]
    few = _write(records[:5], tmp_path / "few", 2, 10)
    assert len(few) <= 2  # 5 rows: the minimum of 2 shards (a hash may leave one empty)
    many = _write(records, tmp_path / "many", 2, 10)
    assert 3 <= len(many) <= 5 and io.read_table(str(tmp_path / "many")).num_rows == 50  # up to ceil(50 / 10)
    again = _write(list(reversed(records)), tmp_path / "again", 2, 10)
    assert [open(a, "rb").read() for a in many] == [open(b, "rb").read() for b in again]
    fixed = _write(records, tmp_path / "fixed", 2, None)
    assert len(fixed) == 2


def test_each_distinct_text_is_embedded_once_and_items_get_embed_items_vectors(tmp_path, no_thread_env):
    shared = ("baking", "bread")
    items = [Item(f"i{n}", f"Sourdough loaf number {n}", shared) for n in range(5)]
    items += [Item("i5", "Sourdough loaf number 0", ("chess",)), Item("i6", "A chess endgame study")]
    events = [{"user_id": "u1", "item_id": it.item_id, "timestamp": f"2024-01-{n + 1:02d}T10:00:00Z"}
              for n, it in enumerate(items)]
    io.write_table(pa.Table.from_pylist(events), str(tmp_path / "events.parquet"))
    io.write_table(pa.Table.from_pylist([{"item_id": it.item_id, "title": it.title, "tags": list(it.tags)}
                                         for it in items]), str(tmp_path / "items.parquet"))
    cache = tmp_path / "cache"
    summary = extract.run(["--events", str(tmp_path / "events.parquet"), "--items", str(tmp_path / "items.parquet"),
                           "--out", str(tmp_path / "out"), "--embedding_cache", str(cache), "--torch_threads", "1"],
                          save_main_session=False)
    # 6 distinct titles (i5 repeats i0's) and 2 distinct contexts; i6 has none.
    assert summary["items"]["texts_embedded"] == 8
    assert summary["config"]["torch_threads"]["threads"] == 1
    cached = [row for path in glob.glob(f"{cache}/*/*.parquet") for row in io.read_table(path).to_pylist()]
    by_key = {row["key"]: np.asarray(row["vector"], dtype=np.float32) for row in cached}
    expected = embed_items(Embedder(torch_threads=1), items)
    assert len(by_key) == len(items)
    for item, vector in zip(items, expected):
        # Batches differ (texts of like length together), so floats may differ in the last bits.
        np.testing.assert_allclose(by_key[item.content_key()], vector, atol=1e-6)
    rerun = extract.run(["--events", str(tmp_path / "events.parquet"), "--items", str(tmp_path / "items.parquet"),
                         "--out", str(tmp_path / "out2"), "--embedding_cache", str(cache)], save_main_session=False)
    assert rerun["items"]["texts_embedded"] == 0  # all cached


@pytest.mark.parametrize("event", [
    Event("u1", "i1", 1_700_000_000_000_000, 1.0, None),
    Event("ユーザー", "item\x00with nul", -5, 2.5, ""),
    Event("u" * 70_000, "é", 0, 0.0, "view"),
])
def test_a_packed_event_unpacks_to_the_same_event(event):
    packed = packed_events.pack(event)
    assert isinstance(packed, bytes)
    assert packed_events.unpack(packed) == event and packed_events.user_of(packed) == event.user_id


def test_parquet_rows_writes_what_write_table_writes_and_nothing_for_no_rows(tmp_path):
    table_schema = pa.schema([("user_id", pa.string()), ("n", pa.int64())])
    rows = [{"user_id": f"u{n}", "n": n} for n in range(25)]
    io.write_table(pa.Table.from_pylist(rows, schema=table_schema), str(tmp_path / "whole.parquet"))
    with io.ParquetRows(str(tmp_path / "streamed.parquet"), table_schema) as streamed:
        for start in range(0, 25, 4):
            streamed.add(rows[start:start + 4])
    assert (tmp_path / "whole.parquet").read_bytes() == (tmp_path / "streamed.parquet").read_bytes()
    with io.ParquetRows(str(tmp_path / "grouped.parquet"), table_schema, rows_per_group=10) as grouped:
        for row in rows:
            grouped.add([row])
    assert io.read_table(str(tmp_path / "grouped.parquet")).to_pylist() == rows
    assert pq.ParquetFile(str(tmp_path / "grouped.parquet")).num_row_groups == 3
    with io.ParquetRows(str(tmp_path / "none.parquet"), table_schema) as empty:
        empty.add([])
    assert not (tmp_path / "none.parquet").exists() and empty.rows == 0


def test_a_failed_shard_leaves_no_file_under_its_name(tmp_path):
    table_schema = pa.schema([("n", pa.int64())])
    with pytest.raises(RuntimeError):
        with io.ParquetRows(str(tmp_path / "part.parquet"), table_schema, rows_per_group=2) as writer:
            writer.add([{"n": 1}, {"n": 2}, {"n": 3}])
            raise RuntimeError("killed")
    assert not (tmp_path / "part.parquet").exists()
