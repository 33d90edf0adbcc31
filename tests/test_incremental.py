"""Incremental runs: `journeys run --previous` on a small sample split in time."""

import contextlib
import io as text_io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from step_outputs import write_step_output

from journeys import cli, io, schema
from journeys.inputs import InputError
from journeys.naming.keywords import KeywordNamer
from pipelines import export, extract, name


def _run(*argv: str) -> dict:
    printed = text_io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["run", *argv, "--namer", "keywords"]) == 0  # the fast namer: naming is not tested here
    return json.loads(printed.getvalue())


@pytest.fixture(scope="module")
def split(small_sample, tmp_path_factory) -> dict:
    """The small sample's events before a cut (two thirds of its time range), and all of them but one
    user's, whose journeys must then end."""
    folder = tmp_path_factory.mktemp("split")
    events = io.read_table(small_sample["events"])
    low, high = pc.min(events["timestamp"]).value, pc.max(events["timestamp"]).value
    cut = pa.scalar(low + 2 * (high - low) // 3, type=events.schema.field("timestamp").type)
    io.write_table(events.filter(pc.less(events["timestamp"], cut)), str(folder / "before.parquet"))
    gone = events["user_id"][0].as_py()
    io.write_table(events.filter(pc.not_equal(events["user_id"], gone)), str(folder / "all.parquet"))
    return {"before": str(folder / "before.parquet"), "all": str(folder / "all.parquet"),
            "items": small_sample["items"], "gone_user": gone}


@pytest.fixture(scope="module")
def runs(split, embedding_cache, tmp_path_factory) -> dict:
    """A run on the events before the cut, then one on all events with --previous, counting every journey
    the keyword namer is given during the second run."""
    base = tmp_path_factory.mktemp("incremental")
    common = ["--items", split["items"], "--embedding_cache", embedding_cache]
    first = _run("--events", split["before"], "--out", str(base / "first"), *common)
    given = []
    original = KeywordNamer.name

    def spy(self, journeys):
        given.extend(j["journey_id"] for j in journeys)
        return original(self, journeys)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KeywordNamer, "name", spy)
        second = _run("--events", split["all"], "--out", str(base / "second"), "--previous", str(base / "first"),
                      *common)
    return {"base": base, "first": first, "second": second, "given_to_namer": given, "common": common}


def _table(run: Path, path: str) -> list[dict]:
    return io.read_table(str(run / path)).to_pylist()


def test_continuing_journeys_keep_their_id_and_first_seen_and_lineage_accounts_for_every_journey(runs, split):
    first, second = runs["base"] / "first", runs["base"] / "second"
    old = {j["journey_id"]: j for j in _table(first, "extract/journeys")}
    new = _table(second, "extract/journeys")
    lineage = _table(second, "extract/lineage")
    kept = [j for j in new if j["journey_id"] in old]
    assert len(kept) >= len(old) // 2  # most of the journeys seen before the cut go on after it
    for journey in kept:
        assert journey["first_seen"] <= journey["first_ts"]
        assert journey["first_seen"] == min(old[journey["journey_id"]]["first_seen"], journey["first_ts"])
        grew = set(journey["item_ids"]) != set(old[journey["journey_id"]]["item_ids"])
        assert journey["version"] == old[journey["journey_id"]]["version"] + grew
    assert all(j["version"] == 1 for j in new if j["journey_id"] not in old)
    # Every new journey has one continued/split/new row, every previous one a continued/merged/ended row.
    for journey in new:
        rows = [r for r in lineage if r["new_id"] == journey["journey_id"]
                and r["relation"] in ("continued", "split", "new")]
        assert len(rows) == 1 and (rows[0]["relation"] == "continued") == (journey["journey_id"] in old)
    for journey_id in old:
        assert sum(r["old_id"] == journey_id and r["relation"] in ("continued", "merged", "ended")
                   for r in lineage) == 1
    summary = json.loads((second / "extract" / "summary.json").read_text())
    assert summary["previous_journeys"] == len(old) and summary["schema_version"] == schema.SCHEMA_VERSION
    assert summary["lineage"]["continued"] == len(kept)
    assert sum(summary["lineage"].values()) == len(lineage)
    # The run time is the latest event's, so that a rerun writes the same rows.
    assert {r["run_time"] for r in lineage} == {pc.max(io.read_table(split["all"])["timestamp"]).as_py()}


def test_carried_journeys_are_not_given_to_the_namer_and_say_why(runs):
    first, second = runs["base"] / "first", runs["base"] / "second"
    previous_names = {j["journey_id"]: j for j in _table(first, "named/named")}
    named = _table(second, "named/named")
    carried = [j for j in named if j["naming_decision"] == "carried"]
    fresh = [j for j in named if j["naming_decision"] == "named"]
    assert carried and fresh
    # Counted by a spy on the namer: only the journeys named afresh were given to it, once each.
    assert sorted(runs["given_to_namer"]) == sorted(j["journey_id"] for j in fresh)
    summary = json.loads((second / "named" / "summary.json").read_text())
    assert summary["sent_to_namer"] == len(fresh) and summary["carried_over"] == len(carried)
    assert runs["second"]["name"]["carried_over"] == len(carried)
    # A fresh name never repeats a carried one of the same user.
    keys = [(j["user_id"], j["name"].casefold()) for j in named]
    assert len(keys) == len(set(keys))
    for journey in carried:
        before = previous_names[journey["journey_id"]]
        assert journey["status"] == "continuing" and journey["name"] == before["name"]
        assert journey["naming_model"] == before["naming_model"]
        assert journey["template_version"] == before["template_version"]
        assert journey["grounding"] >= 0.3 and "grounding" in journey["naming_reason"]
        if journey["centroid"] == before["centroid"]:  # the same encoder: its grounding is not computed again
            assert journey["grounding"] == before["grounding"]
    for journey in fresh:
        if journey["journey_id"] in previous_names:
            assert journey["status"] == "changed" and journey["naming_reason"].startswith(
                ("new items", "previous name's grounding"))
        else:
            assert journey["status"] == "new" and journey["naming_reason"] == "new journey"


def test_a_name_on_an_unmoved_centroid_keeps_its_recorded_grounding_and_nothing_is_embedded(runs):
    from journeys.lineage import CarryConfig

    second = runs["base"] / "second"
    journeys = _table(second, "extract/journeys")
    named = {j["journey_id"]: j for j in _table(second, "named/named")}
    user = max({j["user_id"] for j in journeys}, key=lambda u: sum(j["user_id"] == u for j in journeys))
    element = (user, {"journeys": [j for j in journeys if j["user_id"] == user],
                      "previous": [n for n in named.values() if n["user_id"] == user]})

    def carried(reuse: bool):
        carry_over = name._CarryOver("keywords", "all-MiniLM-L6-v2", CarryConfig(), 1, True, reuse)
        out = {r.value["journey_id"]: r.value["grounding"] for r in carry_over.process(element)
               if getattr(r, "tag", None) == "carried"}
        return out, carry_over.embedder

    reused, embedder = carried(reuse=True)
    assert len(reused) == len(element[1]["journeys"]) >= 2 and embedder is None
    assert all(score == named[journey_id]["grounding"] for journey_id, score in reused.items())
    # Another encoder in the previous run: every name is grounded again, to what was recorded.
    computed, embedder = carried(reuse=False)
    assert embedder is not None and computed.keys() == reused.keys()
    assert all(abs(computed[j] - reused[j]) < 1e-5 for j in reused)


def test_the_export_has_status_version_ended_labels_and_the_lineage_under_the_manifest(runs, split):
    second = runs["base"] / "second" / "export"
    manifest = json.loads((second / "_manifest.json").read_text())
    labels = _table(second.parent, "export/journey_labels")
    lineage = _table(second.parent, "export/lineage")
    named = _table(second.parent, "named/named")
    statuses = {label["journey_id"]: label["status"] for label in labels}
    assert {s for s in statuses.values()} <= {"new", "continuing", "changed", "ended"}
    gone = {r["old_id"] for r in lineage if r["relation"] in ("ended", "merged")}
    assert {jid for jid, s in statuses.items() if s == "ended"} == gone
    # The user without events in the second run: every one of their journeys ended, with its last label.
    before = [label for label in _table(runs["base"] / "first", "export/journey_labels")
              if label["user_id"] == split["gone_user"]]
    assert before and all(statuses[label["journey_id"]] == "ended" for label in before)
    ended = {label["journey_id"]: label for label in labels if label["status"] == "ended"}
    assert all({**ended[label["journey_id"]], "status": "new"} == label for label in before)
    assert manifest["rows"] == len(labels) == manifest["input_rows"] + manifest["ended_rows"]
    assert manifest["balanced"] and manifest["ended_rows"] == len(gone)
    assert manifest["status"] == {s: sum(v == s for v in statuses.values())
                                  for s in ("new", "continuing", "changed", "ended")}
    assert manifest["schema"]["columns"] == schema.JOURNEY_LABELS.names
    assert manifest["lineage"]["rows"] == len(lineage) == len(_table(second.parent, "extract/lineage"))
    assert manifest["lineage"]["schema"]["columns"] == schema.LINEAGE.names
    assert [f["path"] for f in manifest["input"]["lineage_files"]] == sorted(
        p.name for p in (second.parent / "extract" / "lineage").glob("*.parquet"))
    by_id = {j["journey_id"]: j for j in named}
    for label in labels:
        if label["status"] != "ended":
            assert label["version"] == by_id[label["journey_id"]]["version"]
            assert label["first_seen"] == by_id[label["journey_id"]]["first_seen"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def test_a_rerun_with_the_same_input_and_previous_run_is_byte_identical(runs, split, tmp_path):
    again = tmp_path / "again"
    _run("--events", split["all"], "--out", str(again), "--previous", str(runs["base"] / "first"), *runs["common"])
    assert _files(again) == _files(runs["base"] / "second") and _files(again)


def _copy_extract(runs, tmp_path) -> Path:
    copy = tmp_path / "previous"
    shutil.copytree(runs["base"] / "first" / "extract", copy)
    return copy


def _extract(previous: Path, events: str, items: str, out: Path, *extra: str):
    return extract.run(["--events", events, "--items", items, "--out", str(out), "--previous", str(previous),
                        *extra], save_main_session=False)


def test_a_previous_run_without_its_summary_is_refused_as_possibly_partial(runs, split, tmp_path):
    previous = _copy_extract(runs, tmp_path)
    (previous / "summary.json").unlink()
    with pytest.raises(InputError, match="no summary.json.*partial"):
        _extract(previous, split["all"], split["items"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_previous_run_of_another_schema_version_is_refused(runs, split, tmp_path):
    previous = _copy_extract(runs, tmp_path)
    summary = json.loads((previous / "summary.json").read_text())
    (previous / "summary.json").write_text(json.dumps(summary | {"schema_version": "1"}))
    with pytest.raises(InputError, match="schema version 1"):
        _extract(previous, split["all"], split["items"], tmp_path / "out")
    # A file of the older layout is refused by its own metadata too.
    (previous / "summary.json").write_text(json.dumps(summary))
    old = pa.schema(schema.JOURNEYS, metadata={b"journeys.schema": b"journeys", b"journeys.schema_version": b"1"})
    for part in (previous / "journeys").glob("*.parquet"):
        io.write_table(io.read_table(str(part)).cast(old), str(part))
    with pytest.raises(InputError, match="journeys schema version 1.*reads version 2"):
        _extract(previous, split["all"], split["items"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_previous_run_with_another_embedding_model_is_refused(runs, split, tmp_path):
    with pytest.raises(InputError, match="embedding model 'all-MiniLM-L6-v2'.*'some/other-model'"):
        _extract(runs["base"] / "first", split["all"], split["items"], tmp_path / "out",
                 "--embedding_model", "some/other-model")
    assert not (tmp_path / "out").exists()


def test_a_previous_run_about_other_users_is_refused(runs, split, tmp_path):
    events = io.read_table(split["all"])
    renamed = events.set_column(0, "user_id", pc.binary_join_element_wise("other-", events["user_id"], ""))
    io.write_table(renamed, str(tmp_path / "others.parquet"))
    with pytest.raises(InputError, match="other users: none of its .* users has an event"):
        _extract(runs["base"] / "first", str(tmp_path / "others.parquet"), split["items"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_name_and_export_refuse_a_bad_previous_and_run_refuses_before_extracting(runs, split, tmp_path, capsys):
    second = runs["base"] / "second"
    partial = tmp_path / "named-partial"
    shutil.copytree(runs["base"] / "first" / "named", partial)
    (partial / "summary.json").unlink()
    with pytest.raises(InputError, match="partial"):
        name.run(["--journeys", str(second / "extract" / "journeys"), "--out", str(tmp_path / "n"),
                  "--previous", str(partial), "--namer", "keywords"], save_main_session=False)
    with pytest.raises(InputError, match="--previous needs --lineage"):
        export.run(["--named", str(second / "named" / "named"), "--out", str(tmp_path / "e"),
                    "--previous", str(runs["base"] / "first")], save_main_session=False)
    assert not (tmp_path / "n").exists() and not (tmp_path / "e").exists()
    # `journeys run` checks every step's part of the previous run before extracting anything.
    run_copy = tmp_path / "run-copy"
    shutil.copytree(runs["base"] / "first", run_copy)
    (run_copy / "export" / "_manifest.json").unlink()
    code = cli.main(["run", "--events", split["all"], "--out", str(tmp_path / "r"), "--previous", str(run_copy),
                     *runs["common"], "--namer", "keywords"])
    assert code == 2 and "_manifest.json" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_journey_whose_carried_name_cannot_be_grounded_is_dead_lettered_not_lost(runs, tmp_path):
    second = runs["base"] / "second"
    rows = io.read_table(str(second / "extract" / "journeys")).to_pylist()
    carried = {j["journey_id"] for j in _table(second, "named/named") if j["naming_decision"] == "carried"}
    broken = next(r for r in rows if r["journey_id"] in carried)
    broken["centroid"] = [0.5, 0.5]  # the wrong width for the encoder
    write_step_output(pa.Table.from_pylist(rows, schema=schema.JOURNEYS), tmp_path / "in")
    summary = name.run(["--journeys", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--batch_size", "1",
                        "--previous", str(runs["base"] / "first"), "--namer", "keywords"], save_main_session=False)
    assert summary["balanced"] and summary["failed"] >= 1 and summary["named"] == len(rows) - summary["failed"]
    dead = io.read_table(str(tmp_path / "out" / "dead_letter")).to_pylist()
    assert broken["journey_id"] in {json.loads(d["row"])["journey_id"] for d in dead}
