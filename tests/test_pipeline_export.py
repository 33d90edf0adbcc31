"""The export pipeline: named journeys -> journey_labels/ and _manifest.json, on the session's `journeys run`."""

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest
from step_outputs import write_step_output

from journeys import cli, io, schema
from journeys.inputs import InputError
from pipelines import export


def _export(named: str, out: Path, *extra: str) -> dict:
    return export.run(["--named", named, "--out", str(out), *extra], save_main_session=False)


def _manifest(out: Path) -> dict:
    return json.loads((out / "_manifest.json").read_text())


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but a failed run's leftover staging folder (which readers skip)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file())
    return {str(p.relative_to(folder)): p.read_bytes() for p in files if not p.relative_to(folder).parts[0]
            .startswith("_staging-")}


def test_one_label_per_named_journey_with_a_complete_manifest(journeys_run):
    out = Path(journeys_run["out"]) / "export"
    named = io.read_table(journeys_run["named"])
    labels_table = io.read_table(str(out / "journey_labels"))
    assert labels_table.schema.equals(schema.JOURNEY_LABELS, check_metadata=False)
    schema.check_version(labels_table.schema, "journey_labels", "the export")
    assert labels_table.schema.metadata[b"journeys.schema"] == b"journey_labels"
    labels = labels_table.to_pylist()

    # Row accounting: one label per named journey, and the manifest says so.
    manifest = _manifest(out)
    assert manifest["rows"] == manifest["input_rows"] == named.num_rows == len(labels) > 0
    assert manifest["balanced"] and manifest["users"] == len(set(named["user_id"].to_pylist()))
    assert manifest["schema"] == {"name": "journey_labels", "version": schema.SCHEMA_VERSION,
                                  "columns": schema.JOURNEY_LABELS.names}
    assert manifest["format"] == "parquet" and manifest["tool"]["version"]
    config_json = json.dumps(manifest["config"], sort_keys=True).encode()
    assert manifest["config_sha256"] == hashlib.sha256(config_json).hexdigest()
    assert manifest["config"]["include_centroid"] is False and manifest["config"]["top_items"] == 20
    # Every input file is fingerprinted by its path inside the named/ folder, size and content hash.
    named_dir = Path(journeys_run["named"])
    assert manifest["input"]["files"] == [
        {"path": p.name, "size": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
        for p in sorted(named_dir.glob("*.parquet"))
    ]

    # Sorted by user, first seen, journey id; values carried over from the named journeys.
    assert [(r["user_id"], r["first_seen"], r["journey_id"]) for r in labels] == sorted(
        (r["user_id"], r["first_seen"], r["journey_id"]) for r in labels)
    by_id = {r["journey_id"]: r for r in named.to_pylist()}
    assert set(by_id) == {r["journey_id"] for r in labels}
    for label in labels:
        source = by_id[label["journey_id"]]
        assert label["name"] == source["name"] and label["strategy"] == source["naming_strategy"] == "keywords"
        assert label["model"] == source["naming_model"] and label["num_events"] == source["num_events"]
        assert (label["first_seen"], label["last_seen"]) == (source["first_ts"], source["last_ts"])
        assert label["top_item_ids"] == source["item_ids"][:20] and label["top_item_ids"]
        assert label["representative_titles"] == source["representative_titles"]


def test_jsonl_with_centroid_holds_the_same_rows(journeys_run, tmp_path):
    manifest = _export(journeys_run["named"], tmp_path, "--format", "jsonl", "--include_centroid", "--top_items", "3")
    files = sorted((tmp_path / "journey_labels").iterdir())
    assert [f.name for f in files] == ["part-00000.jsonl"]
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    parquet = io.read_table(str(Path(journeys_run["out"]) / "export" / "journey_labels")).to_pylist()
    assert manifest["rows"] == len(rows) == len(parquet) and manifest["format"] == "jsonl"
    assert manifest["schema"]["columns"] == [*schema.JOURNEY_LABELS.names, "centroid"]
    assert [r["journey_id"] for r in rows] == [r["journey_id"] for r in parquet]
    assert rows[0]["first_seen"] == parquet[0]["first_seen"].isoformat()
    assert all(len(r["centroid"]) == 384 and 1 <= len(r["top_item_ids"]) <= 3 for r in rows)


def test_rerun_replaces_a_stale_export_with_identical_files(journeys_run, tmp_path):
    first = _export(journeys_run["named"], tmp_path)
    before = _snapshot(tmp_path / "journey_labels")
    (tmp_path / "journey_labels" / "part-00007.parquet").write_bytes(b"stale")
    second = _export(journeys_run["named"], tmp_path)
    assert _snapshot(tmp_path / "journey_labels") == before  # the stale file is gone, the rest is identical
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_manifest.json", "journey_labels"]  # no staging left
    run_specific = ("created", "wall_seconds")
    assert {k: v for k, v in first.items() if k not in run_specific} == {
        k: v for k, v in second.items() if k not in run_specific}


def test_a_failed_export_never_leaves_output_that_looks_complete(journeys_run, tmp_path):
    good = tmp_path / "good"
    _export(journeys_run["named"], good)
    before = _snapshot(good)

    # The wrong dataset is refused up front: the previous export is untouched.
    with pytest.raises(InputError, match="holds 'journeys' records, expected 'named_journeys'"):
        _export(str(Path(journeys_run["out"]) / "extract" / "journeys"), good)
    assert _snapshot(good) == before

    # A journey without a name passes the input check (right schema) but fails the run while the
    # shards are written, some of them already staged.
    rows = io.read_table(journeys_run["named"]).to_pylist()
    rows[0]["name"] = None
    loose = pa.schema([f.with_nullable(True) for f in schema.NAMED_JOURNEYS], metadata=schema.NAMED_JOURNEYS.metadata)
    write_step_output(pa.Table.from_pylist(rows, schema=loose), tmp_path / "bad", "part.parquet")
    for out in (good, tmp_path / "fresh"):
        with pytest.raises(Exception, match="non-nullable"):
            _export(str(tmp_path / "bad"), out, "--export_shards", "4")
    assert _snapshot(good) == before  # the last complete export, with its own manifest
    assert not list((tmp_path / "fresh").rglob("_manifest.json"))
    assert not (tmp_path / "fresh" / "journey_labels").exists()


def test_an_empty_named_dataset_exports_an_empty_table_and_says_so(tmp_path, capsys):
    write_step_output(schema.NAMED_JOURNEYS.empty_table(), tmp_path / "named")
    assert cli.main(["export", "--named", str(tmp_path / "named"), "--out", str(tmp_path / "out"),
                     "--format", "jsonl"]) == 0
    manifest = _manifest(tmp_path / "out")
    assert (manifest["rows"], manifest["users"], manifest["input_rows"]) == (0, 0, 0)
    assert (tmp_path / "out" / "journey_labels" / "part-00000.jsonl").read_text() == ""
    assert "journeys export: note: " in capsys.readouterr().err  # not a silent run of nothing


@pytest.mark.parametrize("case", ["missing", "empty", "wrong_schema", "not_parquet"])
def test_bad_input_is_one_clear_line_and_exit_code_2(case, tmp_path, capsys):
    named = tmp_path / "named"
    if case != "missing":
        named.mkdir()
    if case == "wrong_schema":
        io.write_table(schema.JOURNEYS.empty_table(), str(named / "part-00000.parquet"))
    if case == "not_parquet":
        (named / "part-00000.jsonl").write_text('{"user_id": "u"}\n')
    assert cli.main(["export", "--named", str(named), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("journeys export: error:") and "\n" not in err
    assert {"missing": "does not exist", "empty": "holds no", "wrong_schema": "expected 'named_journeys'",
            "not_parquet": "is not Parquet"}[case] in err
    assert not (tmp_path / "out").exists()


def test_a_row_of_our_own_dataset_that_does_not_parse_stops_the_run_with_the_reason():
    from pipelines.transforms import own_row

    assert own_row(({"journey_id": "j"}, None)) == {"journey_id": "j"}
    with pytest.raises(ValueError, match="line 7 is not JSON.*damaged"):
        own_row((None, "line 7 is not JSON"))
