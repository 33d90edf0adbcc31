"""The output contract: overlap refusal, the run lock and the clean-up of dead runs' leftovers."""

from __future__ import annotations

import fcntl
import os

import pytest

from journeys import outputs
from journeys.outputs import OutputError


def test_an_out_overlapping_an_input_is_refused_and_a_separate_one_is_not(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.csv").write_text("user_id\n")
    for out, given, relation in ((data, data / "events.csv", "holds"), (data / "events.csv", data / "events.csv", "is"),
                                 (data / "out", data, "is inside")):
        with pytest.raises(OutputError, match=relation):
            outputs.check_overlap(str(out), [("--events", str(given)), ("--items", None)])
    outputs.check_overlap(str(tmp_path / "out"), [("--events", str(data))])
    # A glob is compared with the files it matches: a sibling folder of the matched files is fine.
    outputs.check_overlap(str(data / "out"), [("--events", str(data / "*.csv"))])
    with pytest.raises(OutputError, match="events.csv"):
        outputs.check_overlap(str(data), [("--events", str(data / "*.csv"))])


def test_a_folder_is_held_while_claimed_and_free_after(tmp_path):
    out = tmp_path / "out"
    with outputs.claim(str(out)):
        assert (out / "_lock").read_text().strip() == str(os.getpid())
        with outputs.claim(str(out)):  # one step inside another, in the same process
            pass
        with open(out / "_lock") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another process would meet
        (out / "data").mkdir()
    assert sorted(p.name for p in out.iterdir()) == ["data"]
    with outputs.claim(str(out)):
        pass


def test_a_refused_claim_leaves_no_folder_behind(tmp_path):
    out = tmp_path / "new"
    (tmp_path / "held").mkdir()
    with open(tmp_path / "held" / "_lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match="in use"):
            with outputs.claim(str(tmp_path / "held")):
                pass
    with outputs.claim(str(out)):
        pass
    assert not out.exists()  # made for the claim, left empty: removed


def test_a_dead_runs_leftovers_are_removed_and_other_files_kept(tmp_path):
    out = tmp_path / "out"
    (out / "_staging-abc" / "journeys").mkdir(parents=True)
    (out / "_partial-1-summary.json").write_text("{")
    (out / "_lock").write_text("12345\n")  # its process is gone: nobody holds the flock
    (out / "journeys").mkdir()
    with outputs.claim(str(out)):
        assert sorted(p.name for p in out.iterdir()) == ["_lock", "journeys"]


def test_a_file_target_must_not_be_a_folder_or_an_input(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        outputs.check_file_target(str(tmp_path))
    (tmp_path / "in.json").write_text("{}")
    with pytest.raises(OutputError, match="--eval"):
        outputs.check_file_target(str(tmp_path / "in.json"), [("--eval", str(tmp_path / "in.json"))])
    outputs.check_file_target(str(tmp_path / "new" / "report.html"))
