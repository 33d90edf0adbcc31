"""Hostile but ordinary inputs, options and outputs for every command.

Each case runs the command line in-process (signals in a subprocess) and asserts the exit code, that
no traceback is printed, that the message names the file or option at fault and, where rows are
read, that they balance: per input file, the rows read and rejected, and overall read = used +
dead-lettered. Row-level cases share one extraction over a folder of hostile files (``hostile_run``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io as text_io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journeys import cli, io, schema, stop_signals

ROOT = Path(__file__).resolve().parents[1]


def with_keyword_namer(argv: list) -> list:
    """These cases are about inputs and outputs, not naming: name and run use the fast keyword namer
    unless a case picks a namer itself."""
    return [*argv, "--namer", "keywords"] if argv and argv[0] in ("name", "run") and "--namer" not in argv else argv


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = text_io.StringIO(), text_io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in with_keyword_namer(argv)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def world(small_sample, journeys_run, embedding_cache, tmp_path_factory) -> dict:
    """The session's one `journeys run` on the small sample, and a scratch folder for this module."""
    out = Path(journeys_run["out"])
    return {
        "events": small_sample["events"], "items": small_sample["items"], "truth": small_sample["truth"],
        "sample": str(Path(small_sample["events"]).parent), "cache": embedding_cache,
        "extract": str(out / "extract"), "journeys": str(out / "extract" / "journeys"),
        "transient": str(out / "extract" / "transient"), "dead_letter": str(out / "extract" / "dead_letter"),
        "named_out": str(out / "named"), "named": str(out / "named" / "named"), "run": str(out),
        "scratch": tmp_path_factory.mktemp("hostile"),
    }


# ---- the shared row-level run ---------------------------------------------------------------------

BAD_UTF8 = b"\xff\xfe"
HOSTILE_TIMES = {  # value -> why it is implausible
    "3000-01-01T00:00:00Z": "year 3000",
    "5138-11-16T09:46:40Z": "year 5138 (1e11 epoch seconds)",
    100_000_000_000: "1e11: as milliseconds, 1973",
    99_999_999_999: "just below 1e11: as seconds, the year 5138",
    -86_400: "negative epoch seconds",
}


def _rows(table: pa.Table, users: set[str]) -> list[dict]:
    return [r for r in table.to_pylist() if r["user_id"] in users]


def _iso(row: dict) -> dict:
    return {**row, "timestamp": row["timestamp"].isoformat()}


@pytest.fixture(scope="module")
def hostile_run(world) -> dict:
    """One extract over events in five formats (Parquet, .csv.gz, .jsonl.gz, a JSON array, JSONL and
    CSV with hostile rows) and items in two (one title not UTF-8), into an --out left as a killed run
    leaves it (a stale lock, a staging folder, a partial file)."""
    folder = world["scratch"] / "hostile-run"
    events, items = folder / "events", folder / "items"
    events.mkdir(parents=True)
    items.mkdir()
    table = pq.read_table(world["events"])
    users = sorted(set(table["user_id"].to_pylist()))
    expected: dict[str, dict] = {}  # file name -> {"read": n, "rejected": n, "reasons": Counter}

    def record(name: str, read: int, rejected: Counter | None = None):
        rejected = rejected or Counter()
        expected[name] = {"read": read, "rejected": sum(rejected.values()), "reasons": rejected}

    part = _rows(table, set(users[0:4]))
    pq.write_table(pa.Table.from_pylist(part, schema=schema.EVENTS), events / "part-a.parquet")
    record("part-a.parquet", len(part))

    part = [_iso(r) for r in _rows(table, set(users[4:6]))]
    lines = ["user_id,item_id,timestamp,weight,event_type"] + [
        f"{r['user_id']},{r['item_id']},{r['timestamp']},{r['weight']},{r['event_type']}" for r in part]
    (events / "part-b.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    record("part-b.csv.gz", len(part))

    part = [{**r, "timestamp": int(r["timestamp"].timestamp() * 1000)} for r in _rows(table, set(users[6:8]))]
    (events / "part-c.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in part).encode()))
    record("part-c.jsonl.gz", len(part))

    part = [{**r, "timestamp": int(r["timestamp"].timestamp())} for r in _rows(table, set(users[8:10]))]
    (events / "part-d.json").write_text(json.dumps(part, indent=1))
    record("part-d.json", len(part))

    part = [_iso(r) for r in _rows(table, set(users[10:]))]
    template = part[0]
    lines = [json.dumps(r).encode() for r in part[1:]]
    for value in HOSTILE_TIMES:
        lines.append(json.dumps({**template, "timestamp": value}).encode())
    lines.append(json.dumps({**template, "event_type": "x"}).encode().replace(b'"x"', b'"' + BAD_UTF8 + b'"'))
    (events / "part-e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    record("part-e.jsonl", len(lines), Counter({"implausible_timestamp": len(HOSTILE_TIMES), "malformed_row": 1}))

    csv_lines = [b"user_id,item_id,timestamp,weight,event_type",
                 f"{template['user_id']},{template['item_id']},{template['timestamp']},1,view".encode(),
                 f"{template['user_id']},{template['item_id']},{template['timestamp']},1,".encode() + BAD_UTF8]
    (events / "part-f.csv").write_bytes(b"\n".join(csv_lines) + b"\n")
    record("part-f.csv", 2, Counter({"malformed_row": 1}))

    catalogue = pq.read_table(world["items"]).to_pylist()
    pq.write_table(pa.Table.from_pylist(catalogue[3:], schema=schema.ITEMS), items / "items.parquet")
    item_lines = [b"item_id,title,category"] + [
        f"{it['item_id']},\"{it['title']}\",{it['category']}".encode() for it in catalogue[:2]]
    item_lines.append(f"{catalogue[2]['item_id']},".encode() + b"Caf" + BAD_UTF8 + b" title,x")
    (items / "items-extra.csv").write_bytes(b"\n".join(item_lines) + b"\n")
    items_expected = {"items.parquet": (len(catalogue) - 3, 0), "items-extra.csv": (3, 1)}

    out = folder / "out"
    (out / "_staging-0123456789ab" / "journeys").mkdir(parents=True)
    (out / "_partial-1234-summary.json").write_text("{")
    (out / "_lock").write_text("999999\n")  # a killed run's lock file: nobody holds its flock
    code, printed, err = run_cli(["extract", "--events", events, "--items", items, "--out", out,
                                  "--embedding_cache", world["cache"]])
    summary = json.loads((out / "summary.json").read_text()) if code == 0 else {}
    dead = io.read_table(str(out / "dead_letter")).to_pylist() if code == 0 else []
    return {"code": code, "out": out, "printed": printed, "err": err, "summary": summary, "dead": dead,
            "expected": expected, "items_expected": items_expected, "events": events, "items": items}


# ---- the cases ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    command: str  # the command under test, for the count by command
    kind: str  # silent_loss | misleading | crash | refusal | row_level | interrupt | lock
    argv: Callable[[dict, Path], list]  # (world, tmp_path) -> command line
    code: int = 2
    names: tuple[str, ...] = ()  # what the message (stderr, or stdout on success) must name
    check: Callable | None = None  # (world, tmp_path, stdout, stderr) -> None: more assertions


def _copy(src: str, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _events_folder_22(world, tmp):
    """22 event files; the 22nd has no timestamp column."""
    folder = tmp / "ev22"
    folder.mkdir()
    rows = pq.read_table(world["events"]).to_pylist()
    for n in range(21):
        chunk = rows[n::21]
        pq.write_table(pa.Table.from_pylist(chunk, schema=schema.EVENTS), folder / f"part-{n:02d}.parquet")
    (folder / "part-21.csv").write_text("user_id,item_id,when\nlate-user,i000001,2026-01-02\n")
    return ["extract", "--events", folder, "--items", world["items"], "--out", tmp / "o"]


def _folder_with(world, tmp, name: str, content: bytes):
    folder = tmp / "ev"
    folder.mkdir()
    shutil.copy(world["events"], folder / "events.parquet")
    (folder / name).write_bytes(content)
    return ["extract", "--events", folder, "--items", world["items"], "--out", tmp / "o"]


def _truncated_parquet(world, tmp):
    data = Path(world["events"]).read_bytes()
    return _folder_with(world, tmp, "part-2.parquet", data[: len(data) // 2])


def _bad_header(world, tmp):
    return _folder_with(world, tmp, "more.csv", b"user_id,item_id,tim" + BAD_UTF8 + b"stamp\nu,i,2026-01-01\n")


def _extract(world, tmp, *extra, out=None):
    return ["extract", "--events", world["events"], "--items", world["items"], "--out", out or tmp / "o", *extra]


def _out_is_file(world, tmp):
    (tmp / "o").write_text("not a folder")
    return _extract(world, tmp)


def _read_only(world, tmp):
    (tmp / "ro").mkdir()
    os.chmod(tmp / "ro", 0o555)
    return _extract(world, tmp, out=tmp / "ro" / "o")


def _out_inside_input(world, tmp):
    folder = _copy(world["sample"], tmp / "s")
    return ["extract", "--events", folder, "--items", folder / "items.parquet", "--out", folder / "o"]


def _out_holds_input(world, tmp):
    folder = _copy(world["sample"], tmp / "s")
    return ["extract", "--events", folder / "events.parquet", "--items", folder / "items.parquet", "--out", folder]


def _json_not_array(world, tmp):
    return _folder_with(world, tmp, "more.json", b'[{"user_id": "u", "item_id": "i", "timestamp": 1},\n')


def _locked(world, tmp):
    out = tmp / "o"
    out.mkdir()
    handle = open(out / "_lock", "w")  # a live run: it holds the flock for as long as it runs
    handle.write("4242\n")
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _HELD.append(handle)
    return _extract(world, tmp)


_HELD: list = []


def _name_out_is_extract(world, tmp):
    out = _copy(world["extract"], tmp / "extract")
    return ["name", "--journeys", out / "journeys", "--out", out]


def _shard_deleted(src_key: str, dataset: str, command: list[str]):
    def argv(world, tmp):
        out = _copy(Path(world[src_key]).parent, tmp / "copy")
        shards = sorted((out / dataset).glob("part-*"))
        assert len(shards) > 1
        shards[1].unlink()
        return [*command, out / dataset, "--out", tmp / "o"]
    return argv


def _foreign_file(world, tmp):
    out = _copy(world["named_out"], tmp / "copy")
    shutil.copy(out / "named" / "part-00000.parquet", out / "named" / "part-00000 (copy).parquet")
    return ["export", "--named", out / "named", "--out", tmp / "o"]


def _no_summary(world, tmp):
    folder = _copy(world["named"], tmp / "elsewhere" / "named")
    return ["export", "--named", folder, "--out", tmp / "o"]


def _run_out_holds_events(world, tmp):
    folder = _copy(world["sample"], tmp / "run")
    return ["run", "--events", folder / "events.parquet", "--items", folder / "items.parquet", "--out", folder]


def _export_to_file(world, tmp):
    (tmp / "export").write_text("x")
    return ["run", "--events", world["events"], "--items", world["items"], "--out", tmp / "o",
            "--export_to", tmp / "export"]


def _json_array_file(tmp, name="eval.json"):
    (tmp / name).write_text("[1, 2]")
    return tmp / name


def _predictions_not_utf8(world, tmp):
    (tmp / "q").mkdir()
    (tmp / "q" / "questions.jsonl").write_text("")
    (tmp / "p.jsonl").write_bytes(b'{"question_id": "q1", "prediction": "A' + BAD_UTF8 + b'"}\n')
    return ["uqabench", "score", "--questions", tmp / "q", "--predictions", tmp / "p.jsonl"]


def _uqabench_hostile(world, tmp):
    """Events as JSON Lines with a year-3000 row and a line that is not UTF-8."""
    rows = [_iso(r) for r in pq.read_table(world["events"]).to_pylist()]
    lines = [json.dumps(r).encode() for r in rows]
    lines.append(json.dumps({**rows[0], "timestamp": "3000-01-01T00:00:00Z"}).encode())
    lines.append(json.dumps({**rows[0], "event_type": "x"}).encode().replace(b'"x"', b'"' + BAD_UTF8 + b'"'))
    (tmp / "ev").mkdir()
    (tmp / "ev" / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return ["uqabench", "build", "--events", tmp / "ev", "--items", world["items"], "--out", tmp / "q"]


def _uqabench_balanced(world, tmp, out, err):
    manifest = json.loads((tmp / "q" / "_manifest.json").read_text())
    dead = [json.loads(line) for line in (tmp / "q" / "dead_letter.jsonl").read_text().splitlines()]
    events_dead = [d for d in dead if d["source"] == "events"]
    lines = (tmp / "ev" / "events.jsonl").read_bytes().count(b"\n")
    assert manifest["rows"]["events_read"] == lines == manifest["rows"]["events_used"] + len(events_dead)
    assert Counter(d["reason"] for d in events_dead) >= Counter({"implausible_timestamp": 1, "malformed_row": 1})
    assert all(str(tmp / "ev" / "events.jsonl") in d["detail"] for d in events_dead)


def _movielens_into_itself(world, tmp):
    (tmp / "ml").mkdir()
    (tmp / "ml" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n")
    (tmp / "ml" / "movies.csv").write_text("movieId,title,genres\n10,GoldenEye (1995),Action\n")
    return ["convert", "movielens", "--src", tmp / "ml", "--out", tmp / "ml"]


def _only(folder: Path, names: list[str]) -> None:
    assert sorted(p.name for p in folder.iterdir()) == names


def _no_new_output(path: str):
    def check(world, tmp, out, err):
        assert not (tmp / path).exists() or not any((tmp / path).iterdir())
    return check


def _summary_untouched(world, tmp, out, err):
    summary = json.loads((tmp / "extract" / "summary.json").read_text())
    assert "journeys" in summary and "named" not in summary  # still extract's summary


CASES = [
    # extract: inputs
    Case("extract-22nd-file-without-timestamp", "extract", "silent_loss", _events_folder_22,
         names=("part-21.csv", "'timestamp'"), check=_no_new_output("o")),
    Case("extract-bz2-refused-by-name", "extract", "silent_loss",
         lambda w, t: _folder_with(w, t, "more.csv.bz2", b"BZh91AY"), names=("more.csv.bz2", "decompress")),
    Case("extract-parquet-gz-refused", "extract", "silent_loss",
         lambda w, t: _folder_with(w, t, "more.parquet.gz", gzip.compress(b"x")), names=("more.parquet.gz",)),
    Case("extract-unknown-file-kind-refused", "extract", "silent_loss",
         lambda w, t: _folder_with(w, t, "notes.txt", b"hello"), names=("notes.txt", "format")),
    Case("extract-json-array-that-does-not-parse", "extract", "misleading", _json_not_array,
         names=("more.json", "JSON array")),
    Case("extract-truncated-parquet", "extract", "crash", _truncated_parquet, names=("part-2.parquet",)),
    Case("extract-csv-header-not-utf8", "extract", "crash", _bad_header, names=("more.csv", "UTF-8")),
    Case("extract-items-without-title", "extract", "refusal",
         lambda w, t: ["extract", "--events", w["events"], "--items", w["events"], "--out", t / "o"],
         names=("events.parquet", "'title'")),
    Case("extract-missing-events", "extract", "refusal",
         lambda w, t: ["extract", "--events", t / "nothing", "--items", w["items"], "--out", t / "o"],
         names=("nothing", "does not exist")),
    # extract: outputs
    Case("extract-out-is-a-file", "extract", "crash", _out_is_file, names=("--out", "is a file")),
    Case("extract-out-read-only", "extract", "crash", _read_only, names=("--out", "read-only")),
    Case("extract-out-inside-input", "extract", "silent_loss", _out_inside_input, names=("--out", "is inside")),
    Case("extract-out-holds-input", "extract", "silent_loss", _out_holds_input, names=("--out", "holds")),
    Case("extract-out-held-by-a-live-run", "extract", "lock", _locked, names=("in use", "pid 4242")),
    # extract: options
    Case("extract-misspelt-option", "extract", "misleading", lambda w, t: _extract(w, t, "--min_itmes", "10"),
         names=("--min_itmes", "did you mean --min_items")),
    Case("extract-other-commands-option", "extract", "misleading",
         lambda w, t: _extract(w, t, "--max_titles", "5"), names=("--max_titles", "journeys name")),
    Case("extract-num-shards-0", "extract", "crash", lambda w, t: _extract(w, t, "--num_shards", "0"),
         names=("--num_shards",)),
    Case("extract-embed-batch-size-negative", "extract", "crash",
         lambda w, t: _extract(w, t, "--embed_batch_size=-3"), names=("--embed_batch_size",)),
    Case("extract-hdbscan-with-icpc-threshold", "extract", "misleading",
         lambda w, t: _extract(w, t, "--strategy", "hdbscan", "--threshold", "0.5"), names=("--threshold", "icpc")),
    Case("extract-icpc-with-hdbscan-selection", "extract", "misleading",
         lambda w, t: _extract(w, t, "--hdbscan_selection", "eom"), names=("--hdbscan_selection", "hdbscan")),
    Case("extract-nan-threshold", "extract", "misleading", lambda w, t: _extract(w, t, "--threshold", "nan"),
         names=("--threshold", "finite")),
    Case("extract-bad-timestamp-window", "extract", "refusal",
         lambda w, t: _extract(w, t, "--min_timestamp", "yesterday"), names=("yesterday", "timestamp window")),
    # name
    Case("name-transient-folder", "name", "misleading",
         lambda w, t: ["name", "--journeys", w["transient"], "--out", t / "o"], names=("transient", "'journeys'")),
    Case("name-dead-letter-folder", "name", "misleading",
         lambda w, t: ["name", "--journeys", w["dead_letter"], "--out", t / "o"], names=("dead_letter",)),
    Case("name-extract-out-folder-itself", "name", "misleading",
         lambda w, t: ["name", "--journeys", w["extract"], "--out", t / "o"], names=("journeys/ folder",)),
    Case("name-out-same-as-extract", "name", "silent_loss", _name_out_is_extract, names=("--out", "holds"),
         check=_summary_untouched),
    Case("name-journeys-shard-deleted", "name", "silent_loss",
         _shard_deleted("journeys", "journeys", ["name", "--journeys"]), names=("summary.json", "missing")),
    Case("name-misspelt-option", "name", "misleading",
         lambda w, t: ["name", "--journeys", w["journeys"], "--out", t / "o", "--max_tiltes", "3"],
         names=("--max_tiltes", "--max_titles")),
    Case("name-keywords-with-exemplars", "name", "misleading",
         lambda w, t: ["name", "--journeys", w["journeys"], "--out", t / "o", "--exemplars", "5"],
         names=("--exemplars", "keywords")),
    Case("name-keywords-with-model", "name", "misleading",
         lambda w, t: ["name", "--journeys", w["journeys"], "--out", t / "o", "--model", "gpt2"],
         names=("--model", "keywords")),
    Case("name-batch-size-0", "name", "crash",
         lambda w, t: ["name", "--journeys", w["journeys"], "--out", t / "o", "--batch_size", "0"],
         names=("--batch_size",)),
    # export
    Case("export-named-shard-deleted", "export", "silent_loss",
         _shard_deleted("named", "named", ["export", "--named"]), names=("summary.json", "missing", "rows")),
    Case("export-foreign-file-in-named", "export", "silent_loss", _foreign_file, names=("(copy)",)),
    Case("export-named-without-summary", "export", "silent_loss", _no_summary, names=("summary.json", "named")),
    Case("export-journeys-not-named", "export", "misleading",
         lambda w, t: ["export", "--named", w["journeys"], "--out", t / "o"], names=("'named_journeys'",)),
    Case("export-transient-as-named", "export", "misleading",
         lambda w, t: ["export", "--named", w["transient"], "--out", t / "o"], names=("transient",)),
    Case("export-shards-0", "export", "crash",
         lambda w, t: ["export", "--named", w["named"], "--out", t / "o", "--export_shards", "0"],
         names=("--export_shards",)),
    Case("export-out-is-named", "export", "silent_loss",
         lambda w, t: ["export", "--named", w["named"], "--out", w["named"]], names=("--out", "--named")),
    # run
    Case("run-out-holds-events", "run", "silent_loss", _run_out_holds_events, names=("--out", "--events")),
    Case("run-export-to-is-a-file", "run", "crash", _export_to_file, names=("export", "is a file")),
    Case("run-keywords-with-model", "run", "misleading",
         lambda w, t: ["run", "--events", w["events"], "--items", w["items"], "--out", t / "o", "--model", "gpt2"],
         names=("--model", "keywords")),
    Case("run-format-that-run-sets-itself", "run", "misleading",
         lambda w, t: ["run", "--events", w["events"], "--items", w["items"], "--out", t / "o", "--format", "jsonl"],
         names=("--format", "--export_format")),
    Case("extract-journeys-option-not-read", "extract", "misleading",
         lambda w, t: _extract(w, t, "--journeys", w["journeys"]), names=("--journeys",)),
    Case("run-misspelt-option", "run", "misleading",
         lambda w, t: ["run", "--events", w["events"], "--items", w["items"], "--out", t / "o",
                       "--min_span_day", "3"], names=("--min_span_day", "--min_span_days")),
    # encode
    Case("encode-journey-encoder-with-events", "encode", "misleading",
         lambda w, t: ["encode", "--journeys", w["journeys"], "--events", w["events"], "--out", t / "o"],
         names=("--events", "journey encoder")),
    Case("encode-out-same-as-extract", "encode", "silent_loss",
         lambda w, t: ["encode", "--journeys", w["journeys"], "--out", w["extract"]], names=("--out", "holds")),
    Case("encode-shards-0", "encode", "crash",
         lambda w, t: ["encode", "--journeys", w["journeys"], "--out", t / "o", "--encode_shards", "0"],
         names=("--encode_shards",)),
    Case("encode-transient-folder", "encode", "misleading",
         lambda w, t: ["encode", "--journeys", w["transient"], "--out", t / "o"], names=("transient",)),
    Case("encode-sequence-option-on-journey-encoder", "encode", "misleading",
         lambda w, t: ["encode", "--journeys", w["journeys"], "--out", t / "o", "--sequence_model", t],
         names=("sequence_model",)),
    # eval
    Case("eval-extraction-dead-letter-as-journeys", "eval", "misleading",
         lambda w, t: ["eval", "extraction", "--journeys", w["dead_letter"], "--truth", w["truth"]],
         names=("dead_letter",)),
    Case("eval-extraction-events-as-truth", "eval", "misleading",
         lambda w, t: ["eval", "extraction", "--journeys", w["journeys"], "--truth", w["events"]],
         names=("events.parquet", "'truth'")),
    Case("eval-misspelt-option", "eval", "misleading",
         lambda w, t: ["eval", "extraction", "--journeys", w["journeys"], "--truth", w["truth"], "--usrs", "3"],
         names=("--usrs",)),
    Case("eval-naming-out-is-a-folder", "eval", "crash",
         lambda w, t: ["eval", "naming", "--journeys", w["journeys"], "--truth", w["truth"], "--out", t],
         names=("--out", "is a folder")),
    # report
    Case("report-eval-is-a-json-array", "report", "crash",
         lambda w, t: ["report", "--eval", _json_array_file(t), "--out", t / "r.html"], names=("eval.json",)),
    Case("report-out-is-the-eval-file", "report", "silent_loss",
         lambda w, t: ["report", "--eval", _json_array_file(t), "--out", t / "eval.json"],
         names=("--out", "eval.json")),
    Case("report-transient-as-named", "report", "misleading",
         lambda w, t: ["report", "--named", w["transient"], "--out", t / "r.html"], names=("transient",)),
    # sample, convert, tune, uqabench
    Case("sample-out-is-a-file", "sample", "crash",
         lambda w, t: (t / "s").write_text("x") and ["sample", "--out", t / "s", "--users", "2"],
         names=("--out", "is a file")),
    Case("sample-misspelt-option", "sample", "misleading",
         lambda w, t: ["sample", "--out", t / "s", "--userz", "2"], names=("--userz", "--users")),
    Case("convert-out-is-src", "convert", "silent_loss", _movielens_into_itself, names=("--out", "--src"),
         check=lambda w, t, out, err: _only(t / "ml", ["movies.csv", "ratings.csv"])),
    Case("tune-pairs-out-is-a-folder", "tune", "crash",
         lambda w, t: ["tune", "pairs", "--sample", w["sample"], "--out", t], names=("--out", "is a folder")),
    Case("tune-prompt-train-missing", "tune", "refusal",
         lambda w, t: ["tune", "prompt", "--train", t / "none.jsonl", "--out", t / "a"], names=("none.jsonl",)),
    Case("uqabench-build-out-holds-events", "uqabench", "silent_loss",
         lambda w, t: ["uqabench", "build", "--events", _copy(w["sample"], t / "s") / "events.parquet",
                       "--items", t / "s" / "items.parquet", "--out", t / "s"], names=("--out", "--events")),
    Case("uqabench-build-hostile-rows-balance", "uqabench", "row_level", _uqabench_hostile, code=0,
         names=("questions",), check=_uqabench_balanced),
    Case("uqabench-build-misspelt-option", "uqabench", "misleading",
         lambda w, t: ["uqabench", "build", "--events", w["events"], "--items", w["items"], "--out", t / "q",
                       "--holdot", "2"], names=("--holdot", "--holdout")),
    Case("uqabench-score-predictions-not-utf8", "uqabench", "crash", _predictions_not_utf8,
         names=("p.jsonl", "line 1", "UTF-8")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case, world, tmp_path):
    if case.id == "extract-out-read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    argv = case.argv(world, tmp_path)
    try:
        code, out, err = run_cli(argv)
    finally:
        while _HELD:
            _HELD.pop().close()
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp_path / "ro", 0o755)
    assert "Traceback" not in out + err
    assert code == case.code, err
    message = err if code else out
    for name in case.names:
        assert name in message, (name, message)
    if code:
        assert err.count("\n") == 1 and err.startswith(f"journeys {case.command}"), err  # one line
    if case.check:
        case.check(world, tmp_path, out, err)


# ---- row-level cases: one shared extraction ---------------------------------------------------------

ROW_FILES = ["part-a.parquet", "part-b.csv.gz", "part-c.jsonl.gz", "part-d.json", "part-e.jsonl", "part-f.csv"]


def test_hostile_run_succeeds_without_a_traceback_and_balances(hostile_run):
    assert hostile_run["code"] == 0, hostile_run["err"]
    assert "Traceback" not in hostile_run["printed"] + hostile_run["err"]
    events = hostile_run["summary"]["events"]
    assert events["balanced"] and events["read"] == events["used"] + events["rejected"]
    assert events["read"] == sum(e["read"] for e in hostile_run["expected"].values())
    assert len([d for d in hostile_run["dead"] if d["source"] == "events"]) == events["rejected"]


@pytest.mark.parametrize("file", ROW_FILES)
def test_hostile_run_reads_every_file_and_balances_it(hostile_run, file):
    """Each file: every row read (compressed and JSON-array files too), the planted bad rows in the
    dead letters with their reason, file and row or line number."""
    expected = hostile_run["expected"][file]
    path = str(hostile_run["events"] / file)
    counts = hostile_run["summary"]["files"]["events"][path]
    assert counts == {"read": expected["read"], "rejected": expected["rejected"]}
    dead = [d for d in hostile_run["dead"] if d["source"] == "events" and d["detail"].startswith(path + " ")]
    assert Counter(d["reason"] for d in dead) == expected["reasons"]
    assert all((" row " in d["detail"] or " line " in d["detail"]) for d in dead)


def test_hostile_run_dead_letters_implausible_timestamps_by_their_own_reason(hostile_run):
    dead = [d for d in hostile_run["dead"] if d["reason"] == "implausible_timestamp"]
    assert len(dead) == len(HOSTILE_TIMES)
    assert any("read as epoch milliseconds" in d["detail"] and "1973" in d["detail"] for d in dead)
    assert all("1995-01-01" in d["detail"] for d in dead)
    journeys = io.read_table(str(hostile_run["out"] / "journeys")).to_pylist()
    assert max(j["span_days"] for j in journeys) < 400  # no journey spans centuries


def test_hostile_run_dead_letters_undecodable_text_with_its_row(hostile_run):
    dead = [d for d in hostile_run["dead"] if "UTF-8" in d["detail"]]
    assert {d["source"] for d in dead} == {"events", "items"}
    assert all(d["reason"] == "malformed_row" for d in dead)
    assert any("items-extra.csv row 3" in d["detail"] for d in dead)
    items = hostile_run["summary"]["items"]
    assert items["balanced"] and items["read"] == sum(n for n, _ in hostile_run["items_expected"].values())
    for file, (read, rejected) in hostile_run["items_expected"].items():
        assert hostile_run["summary"]["files"]["items"][str(hostile_run["items"] / file)] == {
            "read": read, "rejected": rejected}


def test_hostile_run_cleans_what_a_killed_run_left(hostile_run):
    names = sorted(p.name for p in hostile_run["out"].iterdir())
    assert names == ["catalogue", "dead_letter", "history", "journeys", "lineage", "summary.json", "transient",
                     "users"]


# ---- interrupts: a real process and a real signal -------------------------------------------------

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"])
def test_an_interrupt_ends_with_one_line_and_no_traceback(world, tmp_path, sig, code):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "journeys.cli", "extract", "--events", world["events"], "--items", world["items"],
         "--out", str(tmp_path / "o")], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell starts background jobs ignoring SIGINT, and Python keeps that: restore the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 5  # the lock appears once the checks have passed (within seconds)
    while not (tmp_path / "o" / "_lock").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    time.sleep(2.0)  # inside the pipeline
    process.send_signal(sig)
    out, err = process.communicate(timeout=180)  # generous: a loaded machine tears Beam down slowly
    assert process.returncode == code, err
    assert "Traceback" not in out + err
    assert err.strip().splitlines()[-1].startswith("journeys extract: stopped by")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_a_signal_that_lands_in_a_finaliser_still_stops_the_command(capsys):
    """Python drops what a ``__del__`` raises: a stop raised there is delivered again, not lost or
    printed (a run once finished with exit 0 after SIGTERM landed in a library's finaliser)."""
    class Finalised:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)  # the handler runs here, inside the finaliser

    hook = sys.unraisablehook
    stop_signals.install()
    try:
        with pytest.raises(stop_signals.Stopped):
            Finalised()  # collected at once
            deadline = time.time() + 10
            while time.time() < deadline:  # the stop delivered again lands in this loop
                time.sleep(0.01)
    finally:
        stop_signals.restore()
    assert stop_signals.take() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and sys.unraisablehook is hook
    assert "Exception ignored" not in capsys.readouterr().err


def test_corpus_size():
    """At least 40 cases across every command (the counts are printed for the record)."""
    by_command = Counter(c.command for c in CASES)
    assert len(CASES) + len(ROW_FILES) + 5 >= 40
    assert set(by_command) >= {"extract", "name", "export", "run", "encode", "eval", "uqabench", "tune",
                               "convert", "sample", "report"}
