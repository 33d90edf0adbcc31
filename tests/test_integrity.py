"""Every dataset verified end to end: a file changed after its step wrote it is refused by name.

Five damages (a flipped byte in a data page, a truncated file, two shards swapped, a file appended
to, a file rewritten with its summary's size edited to match) times five readers of our datasets
(`journeys name`, `export`, `encode`, `report` and `name --previous`), on copies of the session's
one `journeys run`. Each refusal must come before any Beam work: building a pipeline fails the test.
Then the format's own page checksums, the records the steps write, and `journeys verify`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io as text_io
import json
import shutil
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journeys import cli, io

# ---- damages: each takes a dataset folder and returns (the damaged file's name, words the refusal must hold)


def _shards(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet"))


def _data_page_offset(path: Path) -> int:
    """A byte in the middle of the largest data page of the first row group (not a header, not the footer)."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    spans = []
    for i in range(group.num_columns):
        chunk = group.column(i)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        spans.append((start + chunk.total_compressed_size - chunk.data_page_offset, chunk.data_page_offset))
    length, offset = max(spans)
    return offset + length // 2


def flip_byte(folder: Path) -> tuple[str, str]:
    shard = _shards(folder)[0]
    data = bytearray(shard.read_bytes())
    data[_data_page_offset(shard)] ^= 0xFF
    shard.write_bytes(bytes(data))
    return shard.name, "changed in place"


def truncate(folder: Path) -> tuple[str, str]:
    shard = _shards(folder)[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    return shard.name, "truncated"


def swap(folder: Path) -> tuple[str, str]:
    first, second = _shards(folder)[:2]
    one, two = first.read_bytes(), second.read_bytes()
    first.write_bytes(two)
    second.write_bytes(one)
    return first.name, "swapped"


def append(folder: Path) -> tuple[str, str]:
    shard = _shards(folder)[0]
    with open(shard, "ab") as handle:
        handle.write(b"\x00" * 64)
    return shard.name, "appended to"


def rewrite_with_summary_edited(folder: Path) -> tuple[str, str]:
    """A valid Parquet file with the same rows and one journey id changed, its recorded size edited to match."""
    shard = _shards(folder)[0]
    table = pq.read_table(shard)
    ids = table["journey_id"].to_pylist()
    ids[0] = ids[0][::-1]
    table = table.set_column(table.schema.get_field_index("journey_id"), table.schema.field("journey_id"),
                             pa.array(ids, table.schema.field("journey_id").type))
    pq.write_table(table, shard, compression="zstd")
    summary_path = folder.parent / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["outputs"][folder.name].setdefault("sizes", {})[shard.name] = shard.stat().st_size
    summary_path.write_text(json.dumps(summary))
    return shard.name, "changed in place"


DAMAGES = {"flipped_byte": flip_byte, "truncated": truncate, "swapped": swap, "appended": append,
           "summary_edited": rewrite_with_summary_edited}


# ---- readers: which step folder each reads, the dataset damaged in it, and its command line

def _name(copy: Path, run: Path, tmp: Path) -> list[str]:
    return ["name", "--journeys", copy / "journeys", "--out", tmp / "o"]


def _export(copy: Path, run: Path, tmp: Path) -> list[str]:
    return ["export", "--named", copy / "named", "--out", tmp / "o"]


def _encode(copy: Path, run: Path, tmp: Path) -> list[str]:
    return ["encode", "--journeys", copy / "journeys", "--out", tmp / "o"]


def _report(copy: Path, run: Path, tmp: Path) -> list[str]:
    return ["report", "--named", copy / "named", "--out", tmp / "r.html"]


def _previous(copy: Path, run: Path, tmp: Path) -> list[str]:
    return ["name", "--journeys", run / "extract" / "journeys", "--previous", copy, "--out", tmp / "o"]


# reader -> (step folder copied, dataset damaged in it, the command that writes it, command line)
READERS = {
    "name": ("extract", "journeys", "journeys extract", _name),
    "export": ("named", "named", "journeys name", _export),
    "encode": ("extract", "journeys", "journeys extract", _encode),
    "report": ("named", "named", "journeys name", _report),
    "previous": ("named", "named", "journeys name", _previous),
}


def with_keyword_namer(argv: list) -> list:
    """These cases are about inputs and outputs, not naming: name and run use the fast keyword namer
    unless a case picks a namer itself."""
    return [*argv, "--namer", "keywords"] if argv and argv[0] in ("name", "run") and "--namer" not in argv else argv


def run_cli(argv: list) -> tuple[int, str, str]:
    out, err = text_io.StringIO(), text_io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in with_keyword_namer(argv)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def no_beam(monkeypatch):
    """Building a Beam pipeline fails the test: a refusal must come before any work."""
    def refuse(*args, **kwargs):
        raise AssertionError("a Beam pipeline was built: the damaged input was not refused up front")

    monkeypatch.setattr(beam, "Pipeline", refuse)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("reader", READERS)
def test_a_damaged_file_is_refused_by_name_before_any_work(reader, damage, journeys_run, tmp_path, no_beam):
    step, dataset, writer, argv = READERS[reader]
    run = Path(journeys_run["out"])
    copy = tmp_path / step
    shutil.copytree(run / step, copy)
    assert len(_shards(copy / dataset)) >= 2  # two shards to swap
    damaged, what_differs = DAMAGES[damage](copy / dataset)
    code, _printed, err = run_cli(argv(copy, run, tmp_path))
    line = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == 2 and damaged in line, f"not refused by name: exit {code}, {err!r}"
    assert line.startswith(f"journeys {reader if reader != 'previous' else 'name'}: error:")
    assert what_differs in line and f"re-run `{writer}`" in line
    assert not (tmp_path / "o" / "summary.json").exists() and not (tmp_path / "r.html").exists()


# ---- what the steps record, and what the format checks on its own

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_step_records_each_files_size_and_hash_as_written(journeys_run):
    run = Path(journeys_run["out"])
    for marker in (run / "extract" / "summary.json", run / "named" / "summary.json", run / "export" / "_manifest.json"):
        outputs = json.loads(marker.read_text())["outputs"]
        assert outputs
        for name, recorded in outputs.items():
            files = sorted(p.name for p in (marker.parent / name).iterdir())
            assert recorded["files"] == files
            assert recorded["sizes"] == {f: (marker.parent / name / f).stat().st_size for f in files}
            assert recorded["sha256"] == {f: _sha256(marker.parent / name / f) for f in files}


def test_the_export_manifest_carries_the_hashes_it_verified(journeys_run):
    run = Path(journeys_run["out"])
    manifest = json.loads((run / "export" / "_manifest.json").read_text())
    named = json.loads((run / "named" / "summary.json").read_text())["outputs"]["named"]
    assert [(f["path"], f["size"], f["sha256"]) for f in manifest["input"]["files"]] == [
        (f, named["sizes"][f], named["sha256"][f]) for f in named["files"]]
    lineage = json.loads((run / "extract" / "summary.json").read_text())["outputs"]["lineage"]
    assert {f["path"]: f["sha256"] for f in manifest["input"]["lineage_files"]} == lineage["sha256"]


def test_parquet_pages_carry_checksums_that_reading_verifies_in_any_copy(journeys_run, tmp_path):
    labels = Path(journeys_run["out"]) / "export" / "journey_labels" / "part-00000.parquet"
    copy = tmp_path / "elsewhere.parquet"  # a file a consumer copied out of the export, no manifest beside it
    data = bytearray(labels.read_bytes())
    data[_data_page_offset(labels)] ^= 0x01
    copy.write_bytes(bytes(data))
    with pytest.raises(OSError, match="CRC|checksum"):
        io.read_table(str(copy))
    with pytest.raises(OSError, match="CRC|checksum"):
        list(io.iter_rows(str(copy)))


def test_parquet_without_page_checksums_is_still_read(tmp_path):
    path = tmp_path / "theirs.parquet"  # as other tools write it
    pq.write_table(pa.table({"user_id": ["u1", "u2"]}), path, write_page_checksum=False)
    assert io.read_table(str(path))["user_id"].to_pylist() == ["u1", "u2"]


def test_a_summary_without_hashes_is_refused_as_an_older_release(journeys_run, tmp_path, no_beam):
    copy = tmp_path / "named"
    shutil.copytree(Path(journeys_run["out"]) / "named", copy)
    summary = json.loads((copy / "summary.json").read_text())
    for key in ("sizes", "sha256"):
        del summary["outputs"]["named"][key]
    (copy / "summary.json").write_text(json.dumps(summary))
    code, _, err = run_cli(["export", "--named", copy / "named", "--out", tmp_path / "o"])
    assert code == 2 and "records no sizes and SHA-256" in err and "re-run `journeys name`" in err


# ---- journeys verify

def test_verify_passes_a_good_export_and_a_whole_run(journeys_run):
    run = Path(journeys_run["out"])
    code, printed, err = run_cli(["verify", run / "export"])
    report = json.loads(printed)
    assert code == 0 and not err and report["ok"] and report["problems"] == []
    labels = report["datasets"][str(run / "export" / "journey_labels")]
    assert labels["rows"] == json.loads((run / "export" / "_manifest.json").read_text())["rows"]
    code, printed, _ = run_cli(["verify", run])
    assert code == 0 and len(json.loads(printed)["datasets"]) == 11  # extract's 7, name's 2, export's 2


def test_verify_reports_every_difference_in_a_damaged_export(journeys_run, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(Path(journeys_run["out"]) / "export", export)
    labels = export / "journey_labels" / "part-00000.parquet"
    flip_byte(export / "journey_labels")
    (export / "lineage" / "part-00000.parquet").unlink()
    (export / "lineage" / "part-00009.parquet").write_bytes(b"PAR1")
    code, printed, err = run_cli(["verify", export])
    lines = err.strip().splitlines()
    assert code == 1 and not json.loads(printed)["ok"] and len(lines) == 3
    assert all(line.startswith("journeys verify: ") for line in lines)
    assert f"{labels}: does not hold the bytes its step wrote" in err
    assert f"{export / 'lineage' / 'part-00000.parquet'}: missing" in err
    assert f"{export / 'lineage' / 'part-00009.parquet'}: not written by the step" in err


def test_verify_refuses_a_folder_with_no_record(tmp_path):
    code, _, err = run_cli(["verify", tmp_path])
    assert code == 2 and "holds no _manifest.json or summary.json" in err
