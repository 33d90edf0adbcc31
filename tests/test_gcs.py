"""gs:// reads and writes through gcsfs, against a real local GCS API server (gcp-storage-emulator)."""

import json
from pathlib import Path

import fsspec
from conftest import GCS_BUCKET as BUCKET

from journeys import cli, io
from pipelines import export, extract


def test_sample_writes_to_gcs_and_reads_back(gcs, capsys):
    assert cli.main(["sample", "--out", f"{gcs}/sample", "--users", "3", "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 3
    events = io.read_table(f"{gcs}/sample/events.parquet")
    assert events.num_rows > 0 and set(events["user_id"].to_pylist()) == {"u00000", "u00001", "u00002"}


def test_extract_reads_and_writes_gs_paths(gcs, small_sample, embedding_cache):
    fs = fsspec.filesystem("gcs")
    for name in ("events", "items"):
        fs.put(small_sample[name], f"{BUCKET}/input/{name}.parquet")
    summary = extract.run(["--events", f"{gcs}/input/events.parquet", "--items", f"{gcs}/input/items.parquet",
                           "--out", f"{gcs}/run", "--embedding_cache", embedding_cache], save_main_session=False)
    assert summary["events"]["balanced"] and summary["journeys"] > 0
    journeys = io.read_table(f"{gcs}/run/journeys")
    assert journeys.num_rows == summary["journeys"]
    listing = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/run"))
    # The staging folder is gone.
    assert listing == ["catalogue", "dead_letter", "history", "journeys", "lineage", "summary.json", "transient",
                       "users"]


def test_export_reads_and_writes_gs_paths(gcs, journeys_run):
    fs = fsspec.filesystem("gcs")
    fs.put(journeys_run["named"], f"{BUCKET}/named", recursive=True)
    # The name step's summary beside it: export checks the folder against it.
    fs.put(str(Path(journeys_run["named"]).parent / "summary.json"), f"{BUCKET}/summary.json")
    fs.pipe(f"{BUCKET}/export/journey_labels/part-00009.parquet", b"stale")  # a previous export's leftover
    manifest = export.run(["--named", f"{gcs}/named", "--out", f"{gcs}/export"], save_main_session=False)
    labels = io.read_table(f"{gcs}/export/journey_labels")
    local = io.read_table(str(Path(journeys_run["out"]) / "export" / "journey_labels"))
    assert labels.equals(local) and manifest["rows"] == labels.num_rows
    with fs.open(f"{BUCKET}/export/_manifest.json") as handle:
        assert json.load(handle) == manifest
    named_files = sorted(p.name for p in Path(journeys_run["named"]).iterdir())
    assert [f["path"] for f in manifest["input"]["files"]] == named_files  # relative to gs://.../named
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/export")) == ["_manifest.json", "journey_labels"]
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{BUCKET}/export/journey_labels")) == ["part-00000.parquet"]
