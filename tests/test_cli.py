import json
import subprocess
import sys
from pathlib import Path

import pytest

from journeys import cli, io

SHARED_MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-small"


def test_help_says_what_goes_in_and_what_comes_out():
    result = subprocess.run([sys.executable, "-m", "journeys.cli", "extract", "--help"],
                            capture_output=True, text=True, check=True)
    for word in ("user_id", "journeys/", "dead_letter/", "summary.json", "DataflowRunner"):
        assert word in result.stdout
    top = subprocess.run([sys.executable, "-m", "journeys.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("sample", "extract", "name", "export", "run", "eval", "convert", "uqabench", "encode"):
        assert command in top.stdout


def test_sample_then_extract_then_eval_from_the_command_line(tmp_path, capsys, embedding_cache):
    assert cli.main(["sample", "--out", str(tmp_path / "s"), "--users", "4", "--seed", "5"]) == 0
    assert cli.main(["extract", "--events", str(tmp_path / "s" / "events.parquet"),
                     "--items", str(tmp_path / "s" / "items.parquet"), "--out", str(tmp_path / "o"),
                     "--embedding_cache", embedding_cache]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "extraction", "--journeys", str(tmp_path / "o" / "journeys"),
                     "--truth", str(tmp_path / "s" / "truth.parquet")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["users"] == 4 and 0 <= metrics["journey_recall"] <= 1 and metrics["ari"] is not None


def test_data_errors_are_one_clear_line_not_a_stack_trace(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id\nu,i\n")
    result = subprocess.run([sys.executable, "-m", "journeys.cli", "extract", "--events", str(events),
                             "--items", str(events), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "events file" in result.stderr and "'timestamp'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_sample_knob_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["sample", "--out", str(tmp_path), "--noise-share", "1.5"]) == 2
    assert "noise_share" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_MOVIELENS.exists(), reason="the shared MovieLens copy is not beside the checkout")
def test_convert_movielens(tmp_path, capsys):
    assert cli.main(["convert", "movielens", "--src", str(SHARED_MOVIELENS), "--out", str(tmp_path)]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["events"] == 100_836 and counts["items"] == 9_742 and counts["user_tags"] == 3_683
    items = io.read_table(str(tmp_path / "items.parquet")).to_pylist()
    toy_story = next(i for i in items if i["item_id"] == "1")
    assert toy_story["title"].startswith("Toy Story") and "Animation" in toy_story["tags"]
    events = io.read_table(str(tmp_path / "events.parquet"))
    assert events.schema.field("timestamp").type.tz == "UTC"


def test_convert_movielens_reports_a_missing_file(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    assert cli.main(["convert", "movielens", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "o")]) == 2
    assert "ratings.csv" in capsys.readouterr().err


def test_run_extracts_names_and_exports_from_the_command_line(journeys_run):
    out, printed = Path(journeys_run["out"]), journeys_run["printed"]
    for marker in ("extract/summary.json", "named/summary.json", "export/_manifest.json"):
        assert (out / marker).is_file()
    manifest = json.loads((out / "export" / "_manifest.json").read_text())
    assert printed["extract"]["journeys"] == printed["name"]["named"] == printed["export"]["rows"] == manifest["rows"]
    assert printed["export"]["rows"] > 0 and printed["name"]["failed"] == 0
    assert printed["extract"]["events_read"] > 0 and printed["export"]["users"] == manifest["users"]
    names = {r["name"] for r in io.read_table(str(out / "export" / "journey_labels")).to_pylist()}
    assert all(names)


def test_run_refuses_an_unknown_namer_before_extracting(tmp_path, capsys, small_sample):
    code = cli.main(["run", "--events", small_sample["events"], "--items", small_sample["items"],
                     "--out", str(tmp_path / "o"), "--namer", "no-such-namer"])
    assert code == 2 and "unknown namer 'no-such-namer'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
