"""Delta runs: `--previous RUN --delta` over only the new events agrees with a fresh run over all."""

import contextlib
import io as text_io
import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from journeys import cli, io
from journeys.inputs import InputError
from pipelines import extract

QUIET_USERS = 3  # users with no events after the cut: carried, not clustered again


def _main(*argv: str) -> dict:
    printed = text_io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(list(argv)) == 0
    return json.loads(printed.getvalue().strip().splitlines()[-1])


def _summary(folder: str) -> dict:
    with open(os.path.join(folder, "summary.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def days(small_sample, tmp_path_factory) -> dict:
    """The small sample cut at three quarters of its time range: the events before, the new ones
    (none for QUIET_USERS users), and all of them (before + new)."""
    folder = tmp_path_factory.mktemp("delta")
    events = io.read_table(small_sample["events"])
    low, high = pc.min(events["timestamp"]).value, pc.max(events["timestamp"]).value
    cut = pa.scalar(low + 3 * (high - low) // 4, type=events.schema.field("timestamp").type)
    before = events.filter(pc.less(events["timestamp"], cut))
    quiet = sorted(set(before["user_id"].to_pylist()))[:QUIET_USERS]
    later = events.filter(pc.greater_equal(events["timestamp"], cut))
    new = later.filter(pc.invert(pc.is_in(later["user_id"], pa.array(quiet))))
    paths = {name: str(folder / f"{name}.parquet") for name in ("before", "new", "all")}
    io.write_table(before, paths["before"])
    io.write_table(new, paths["new"])
    io.write_table(pa.concat_tables([before, new]), paths["all"])
    return {**paths, "items": small_sample["items"], "quiet": quiet, "folder": folder}


@pytest.fixture(scope="module")
def runs(days, embedding_cache) -> dict:
    """`journeys run` over the days before, then `journeys run --previous --delta` over the new ones,
    and a fresh extraction over all events."""
    folder, cache = days["folder"], ["--embedding_cache", embedding_cache]
    common = ["--items", days["items"], *cache]
    _main("run", "--events", days["before"], "--out", str(folder / "before"), *common)
    printed = _main("run", "--events", days["new"], "--out", str(folder / "delta"), "--previous",
                    str(folder / "before"), "--delta", *common)
    _main("extract", "--events", days["all"], "--out", str(folder / "fresh"), *common)
    return {"before": str(folder / "before" / "extract"), "delta": str(folder / "delta" / "extract"),
            "fresh": str(folder / "fresh"), "printed": printed}


def _rows(folder: str, dataset: str, drop: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """A dataset's rows by user, in file order, without the columns in ``drop``."""
    found: dict[str, list[dict]] = {}
    for row in io.read_table(os.path.join(folder, dataset)).to_pylist():
        found.setdefault(row["user_id"], []).append({k: v for k, v in row.items() if k not in drop})
    return found


def test_users_with_new_events_get_what_a_fresh_run_over_all_events_gives(runs, days):
    active = set(io.read_table(days["new"])["user_id"].to_pylist())
    assert active and not active & set(days["quiet"])
    # Identity (id, first seen, version) comes from the previous run in a delta run, by design.
    identity = ("journey_id", "first_seen", "version")
    delta, fresh = _rows(runs["delta"], "journeys", drop=identity), _rows(runs["fresh"], "journeys", drop=identity)
    pairs = [("journeys", delta, fresh)] + [(name, _rows(runs["delta"], name), _rows(runs["fresh"], name))
                                            for name in ("transient", "users", "history")]
    for dataset, found, expected in pairs:
        for user in sorted(active):
            assert found.get(user) == expected.get(user), (dataset, user)
    assert sum(len(delta[user]) for user in active) > 0


def test_users_without_new_events_are_carried_as_they_were(runs, days):
    for dataset in ("journeys", "transient", "users", "lineage", "history"):
        before, delta = _rows(runs["before"], dataset), _rows(runs["delta"], dataset)
        for user in days["quiet"]:
            assert delta.get(user) == before.get(user), (dataset, user)
    assert any(_rows(runs["before"], "journeys").get(user) for user in days["quiet"])
    # Their lineage rows keep the previous run's as-of time: how the files show they were carried.
    as_of = _summary(runs["delta"])["as_of"]
    for user in days["quiet"]:
        assert all(row["run_time"].isoformat() < as_of for row in _rows(runs["delta"], "lineage").get(user, []))


def test_the_summary_separates_carried_from_recomputed_and_still_balances(runs, days):
    summary, before = _summary(runs["delta"]), _summary(runs["before"])
    part, events = summary["delta"], summary["events"]
    assert part["users"]["carried"] == len(days["quiet"])
    assert part["users"]["carried"] + part["users"]["recomputed"] == summary["users"]["with_valid_events"]
    assert events["read"] == io.read_table(days["new"]).num_rows
    assert events["from_history"] + events["carried"] == before["events"]["used"]
    assert events["balanced"] and summary["items"]["balanced"]
    assert part["journeys"]["carried"] + part["journeys"]["recomputed"] == summary["journeys"]
    assert part["journeys"]["carried"] == sum(len(_rows(runs["before"], "journeys").get(u, [])) for u in days["quiet"])
    # Only items the previous run had no vector for are embedded (a title and a context at most).
    known = set(io.read_table(os.path.join(runs["before"], "catalogue"))["item_id"].to_pylist())
    unseen = set(io.read_table(days["new"])["item_id"].to_pylist()) - known
    assert summary["items"]["texts_embedded"] <= 2 * len(unseen) < 2 * summary["items"]["with_events"]
    assert summary["as_of"] > before["as_of"]
    # `journeys run` takes the same path: the carried journeys keep their names without the namer.
    assert runs["printed"]["name"]["sent_to_namer"] < runs["printed"]["name"]["named"]


def test_a_delta_rerun_writes_identical_files(runs, days, embedding_cache, tmp_path):
    extract.run(["--events", days["new"], "--items", days["items"], "--out", str(tmp_path), "--previous",
                 runs["before"], "--delta", "--embedding_cache", embedding_cache])
    first, again = _summary(runs["delta"])["outputs"], _summary(str(tmp_path))["outputs"]
    assert {name: again[name]["sha256"] for name in again} == {name: first[name]["sha256"] for name in first}


def test_repeated_and_late_events_follow_the_stated_rule(runs, days, embedding_cache, tmp_path):
    history = io.read_table(days["before"])
    user = days["quiet"][0]
    old = history.filter(pc.equal(history["user_id"], user))
    repeat = old.slice(0, 1)  # sent again: already in the history
    late = old.slice(1, 1).set_column(1, old.schema.field("item_id"), old.slice(0, 1)["item_id"])  # an old time
    path = str(tmp_path / "new.parquet")
    io.write_table(pa.concat_tables([repeat, late]), path)
    summary = extract.run(["--events", path, "--items", days["items"], "--out", str(tmp_path / "out"), "--previous",
                           runs["before"], "--delta", "--embedding_cache", embedding_cache])
    part = summary["delta"]
    assert part["events"]["new_repeating_history"] == 1 and part["events"]["new_late"] == 2
    assert part["users"]["recomputed"] == 1 and summary["events"]["rejected_by_reason"] == {"duplicate_event": 1}
    assert summary["events"]["balanced"]
    users = _rows(str(tmp_path / "out"), "users")
    assert users[user][0]["num_events"] == _rows(runs["before"], "users")[user][0]["num_events"] + 1


def test_a_delta_run_refuses_what_it_cannot_continue(runs, days, tmp_path):
    base = ["--events", days["new"], "--items", days["items"], "--out", str(tmp_path / "out")]
    with pytest.raises(ValueError, match="--delta continues from a previous run"):
        extract.run([*base, "--delta"])
    with pytest.raises(InputError, match="--num_shards 4"):
        extract.run([*base, "--previous", runs["before"], "--delta", "--num_shards", "2"])
    with pytest.raises(InputError, match="other strategy_params than this run"):
        extract.run([*base, "--previous", runs["before"], "--delta", "--threshold", "0.45"])
    # A damaged history file is refused before any work, naming it.
    damaged = tmp_path / "before"
    import shutil

    shutil.copytree(runs["before"], damaged)
    part = sorted((damaged / "history").iterdir())[0]
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(InputError, match="history"):
        extract.run([*base, "--previous", str(damaged), "--delta"])
    assert not (tmp_path / "out" / "summary.json").exists()


def _statistics(folder: str) -> tuple:
    summary = _summary(folder)
    tags = [block for block in summary["representation"]["blocks"] if block["name"] == "tags"]
    return summary["centring"]["items"], summary["centring"]["mean_sha256"], tags[0]["sha256"]


def test_statistics_are_refreshed_as_a_fresh_run_computes_them(runs):
    # The stated exception: the new events bring items the previous run had no event on, so the
    # statistics move; users with new events are clustered with the new ones (as a fresh run is),
    # carried users keep what the previous statistics gave them.
    assert _statistics(runs["delta"]) == _statistics(runs["fresh"])
    assert _statistics(runs["before"])[0] < _statistics(runs["delta"])[0]


def test_statistics_over_the_catalogue_make_every_user_agree(days, embedding_cache, tmp_path):
    common = ["--items", days["items"], "--embedding_cache", embedding_cache, "--statistics", "catalogue"]
    extract.run(["--events", days["before"], "--out", str(tmp_path / "before"), *common])
    extract.run(["--events", days["new"], "--out", str(tmp_path / "delta"), "--previous", str(tmp_path / "before"),
                 "--delta", *common])
    extract.run(["--events", days["all"], "--out", str(tmp_path / "fresh"), *common])
    assert _statistics(str(tmp_path / "before")) == _statistics(str(tmp_path / "delta")) \
        == _statistics(str(tmp_path / "fresh"))
    identity = ("journey_id", "first_seen", "version")
    for dataset, drop in (("journeys", identity), ("transient", ()), ("users", ())):
        assert _rows(str(tmp_path / "delta"), dataset, drop) == _rows(str(tmp_path / "fresh"), dataset, drop), dataset
    with pytest.raises(InputError, match="other statistics than this run"):
        extract.run(["--events", days["new"], "--items", days["items"], "--out", str(tmp_path / "mixed"),
                     "--previous", str(tmp_path / "before"), "--delta"])
