"""The Beam extraction pipeline end to end, on the local runner, with the real MiniLM encoder."""

import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, SetupOptions

from eval.extraction import evaluate
from journeys import cli, io, schema
from journeys.inputs import InputError
from pipelines import extract


def _run(events, items, out, cache, *extra):
    return extract.run(["--events", events, "--items", items, "--out", str(out), "--embedding_cache", cache, *extra],
                       save_main_session=False)


@pytest.fixture(scope="module")
def sample_run(small_sample, embedding_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("extract")
    summary = _run(small_sample["events"], small_sample["items"], out, embedding_cache)
    return out, summary


def test_every_event_is_accounted_for_and_journeys_match_the_truth(sample_run, small_sample):
    out, summary = sample_run
    events = summary["events"]
    assert events["balanced"] and events["rejected"] == 0
    assert events["read"] == io.read_table(small_sample["events"]).num_rows
    assert events["in_journeys"] > 0 and events["in_transient"] > 0
    assert summary["users"]["with_valid_events"] == 12
    journeys = io.read_table(str(out / "journeys"))
    assert journeys.schema.equals(schema.JOURNEYS, check_metadata=False)
    assert journeys.num_rows == summary["journeys"]
    truth = io.read_table(small_sample["truth"])
    metrics = evaluate(zip(journeys["user_id"].to_pylist(), journeys["item_ids"].to_pylist()), truth)
    assert metrics["journey_recall"] >= 0.75 and metrics["journey_precision"] >= 0.75
    transient = io.read_table(str(out / "transient"))
    assert transient.num_rows == summary["transient_clusters"]
    assert all(transient["reason"].to_pylist())
    assert io.read_table(str(out / "dead_letter")).num_rows == 0
    assert sorted(p.name for p in out.iterdir()) == ["catalogue", "dead_letter", "history", "journeys", "lineage",
                                                   "summary.json", "transient", "users"]


def test_every_user_has_a_row_saying_which_rule_judged_them_and_the_outcome(sample_run):
    out, summary = sample_run
    users = io.read_table(str(out / "users")).to_pylist()
    assert len(users) == len({u["user_id"] for u in users}) == summary["users"]["with_valid_events"]
    journeys = io.read_table(str(out / "journeys"))["user_id"].to_pylist()
    assert set(journeys) <= {u["user_id"] for u in users}
    for user in users:
        assert user["journeys"] == journeys.count(user["user_id"])
        assert user["outcome"] == ("journeys" if user["journeys"] else
                                   "only_transient" if user["transient_clusters"] else "no_cluster")
    # The sample's histories span months, so time can show persistence for every user.
    assert summary["users"]["by_persistence_rule"] == {"time": len(users)}
    assert sum(summary["users"]["by_outcome"].values()) == len(users)
    assert summary["centring"]["method"] == "mean" and len(summary["centring"]["mean"]) == 384
    assert 0 < summary["centring"]["mean_norm"] < 1


def test_bursty_histories_are_judged_by_count_and_no_user_is_dropped(embedding_cache, tmp_path):
    from journeys.sample.generator import SampleConfig, generate

    data = generate(SampleConfig(users=8, seed=5, items_per_topic=10, timestamps="bursty"))
    paths = {name: str(tmp_path / f"{name}.parquet") for name in ("events", "items")}
    io.write_table(data.events, paths["events"])
    io.write_table(data.items, paths["items"])
    timed = _run(paths["events"], paths["items"], tmp_path / "time", embedding_cache, "--persistence", "time")
    auto = _run(paths["events"], paths["items"], tmp_path / "auto", embedding_cache)
    # Under the time rule no cluster of a history logged in 1-3 sessions can pass.
    assert timed["journeys"] == 0 and timed["users"]["by_outcome"].get("only_transient", 0) > 0
    assert auto["users"]["by_persistence_rule"] == {"count": 8} and auto["journeys"] > 0
    assert auto["events"]["balanced"] and timed["events"]["balanced"]
    rows = io.read_table(str(tmp_path / "auto" / "users")).to_pylist()
    assert len(rows) == 8 and {r["persistence_rule"] for r in rows} == {"count"}


def test_without_centring_the_summary_says_so(small_sample, embedding_cache, tmp_path):
    summary = _run(small_sample["events"], small_sample["items"], tmp_path, embedding_cache,
                   "--centring", "none", "--threshold", "0.55", "--centroid_merge_threshold", "0.65",
                   "--merge_threshold", "0.4")
    assert summary["centring"] == {"method": "none"} and summary["config"]["centring"] == "none"
    assert summary["events"]["balanced"] and summary["journeys"] > 0


def test_a_rerun_gives_identical_output_and_replaces_the_old_one(sample_run, small_sample, embedding_cache):
    out, first = sample_run
    before = io.read_table(str(out / "journeys"))
    again = _run(small_sample["events"], small_sample["items"], out, embedding_cache, "--num_shards", "2")
    assert io.read_table(str(out / "journeys")).sort_by("journey_id").equals(before.sort_by("journey_id"))
    assert len(list((out / "journeys").iterdir())) <= 2  # the old four shards are gone
    # Everything but the time, the files written (2 shards now, 4 before) and the texts embedded
    # (none: every vector came from the cache) is the same.
    assert again["items"].pop("texts_embedded") == 0
    first = {**first, "items": {k: v for k, v in first["items"].items() if k != "texts_embedded"}}
    assert (first["config"].pop("num_shards"), again["config"].pop("num_shards")) == (4, 2)
    assert {k: v for k, v in again.items() if k not in ("wall_seconds", "outputs")} == {
        k: v for k, v in first.items() if k not in ("wall_seconds", "outputs")}


def test_hdbscan_strategy_runs_through_the_pipeline(small_sample, embedding_cache, tmp_path):
    summary = _run(small_sample["events"], small_sample["items"], tmp_path, embedding_cache, "--strategy", "hdbscan")
    assert summary["events"]["balanced"] and summary["journeys"] > 0
    assert set(io.read_table(str(tmp_path / "journeys"))["strategy"].to_pylist()) == {"hdbscan"}


BAD_EVENTS = """user_id,item_id,timestamp,weight
u1,i1,2024-01-01T10:00:00Z,1
u1,i1,2024-01-01T10:00:00Z,1
,i1,2024-01-02T10:00:00Z,1
u1,,2024-01-02T10:00:00Z,1
u1,i2,yesterday-ish,1
u1,i2,1704103200,heavy
u1,i404,1704103200000,1
u2,i3,1704103200
u2,i3,2024-01-05,1,extra
u3,i5,2024-02-01T00:00:00+01:00,
"""

BAD_ITEMS = [
    {"item_id": "i1", "title": "🍞 Sourdough at home", "tags": ["baking"]},
    {"item_id": "i2", "title": "天然酵母パンの作り方", "tags": "baking|bread"},
    {"item_id": "i3", "title": "Ржаной хлеб", "category": None},
    {"item_id": "i3", "title": "Ржаной хлеб", "category": "food"},
    {"item_id": "i4", "title": None},
    {"item_id": "i5", "title": "Tour de France stage 4", "tags": 7},
]


def test_bad_rows_are_dead_lettered_with_reasons_and_nothing_is_lost(tmp_path, embedding_cache):
    events = tmp_path / "events.csv"
    events.write_text(BAD_EVENTS, encoding="utf-8")
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in BAD_ITEMS) + "\n{broken\n", encoding="utf-8")
    summary = _run(str(events), str(items), tmp_path / "out", embedding_cache)
    assert summary["events"]["rejected_by_reason"] == {
        "bad_timestamp": 1, "bad_weight": 1, "duplicate_event": 1, "malformed_row": 2, "missing_item_id": 1,
        "missing_user_id": 1, "unknown_item": 2,  # i404 is not in the catalogue; i5's item row was rejected
    }
    assert summary["items"]["rejected_by_reason"] == {
        "bad_tags": 1, "duplicate_item": 1, "malformed_row": 1, "missing_title": 1}
    assert summary["events"]["read"] == 10 and summary["events"]["balanced"]
    assert summary["items"]["read"] == 7 and summary["items"]["balanced"]
    dead = io.read_table(str(tmp_path / "out" / "dead_letter")).to_pylist()
    assert len(dead) == summary["events"]["rejected"] + summary["items"]["rejected"]
    assert all(d["reason"] and d["detail"] for d in dead)
    unknown = [d for d in dead if d["reason"] == "unknown_item"]
    assert {d["item_id"] for d in unknown} == {"i404", "i5"}
    assert json.loads(unknown[0]["row"])["user_id"] in {"u1", "u3"}


@pytest.mark.parametrize("which", ["events", "items"])
def test_an_input_with_no_rows_is_refused_before_any_work(which, tmp_path, small_sample, capsys):
    empty = tmp_path / f"{which}.csv"
    empty.write_text("user_id,item_id,timestamp\n" if which == "events" else "item_id,title\n")
    paths = {"events": small_sample["events"], "items": small_sample["items"], which: str(empty)}
    code = cli.main(["extract", "--events", paths["events"], "--items", paths["items"], "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"journeys extract: error: {which} '{empty}' holds no rows")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_no_valid_event_ends_with_a_line_saying_so_and_the_dead_letters(tmp_path, small_sample, embedding_cache,
                                                                         capsys):
    events = tmp_path / "events.jsonl"
    rows = io.read_table(small_sample["events"]).slice(0, 5).to_pylist()
    events.write_text("".join(json.dumps({**r, "timestamp": "3000-01-01T00:00:00Z"}) + "\n" for r in rows))
    code = cli.main(["extract", "--events", str(events), "--items", small_sample["items"], "--out",
                     str(tmp_path / "o"), "--embedding_cache", embedding_cache])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith("journeys extract: error: no valid events: all 5 rows of --events were rejected "
                          "(implausible_timestamp 5)") and "dead_letter" in err
    # The run itself finished: the dead letters say why each row was rejected.
    assert io.read_table(str(tmp_path / "o" / "dead_letter")).num_rows == 5
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["events"]["used"] == 0


def test_missing_column_stops_before_running_with_the_column_and_file(tmp_path, small_sample):
    events = tmp_path / "clicks.csv"
    events.write_text("user,item_id,timestamp\nu,i,1\n")
    with pytest.raises(InputError, match=r"clicks\.csv.*'user_id'"):
        extract.run(["--events", str(events), "--items", small_sample["items"], "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_multi_processing_mode_gives_the_same_journeys(sample_run, small_sample, embedding_cache, tmp_path):
    out, _ = sample_run
    _run(small_sample["events"], small_sample["items"], tmp_path, embedding_cache,
         "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    assert io.read_table(str(tmp_path / "journeys")).sort_by("journey_id").equals(
        io.read_table(str(out / "journeys")).sort_by("journey_id"))


def test_the_graph_builds_with_dataflow_options_without_touching_anything(tmp_path, monkeypatch):
    # No job is submitted: the graph is built and serialised as Dataflow would receive it. The runner
    # object itself is not created, because DataflowRunner contacts GCS as soon as it starts.
    monkeypatch.chdir(tmp_path)
    argv = ["--runner", "DataflowRunner", "--project", "demo-project", "--region", "europe-west1",
            "--temp_location", "gs://demo-bucket/tmp", "--setup_file", "./setup.py",
            "--events", "gs://demo-bucket/events/", "--items", "gs://demo-bucket/items.parquet",
            "--out", "gs://demo-bucket/run", "--embedding_cache", "gs://demo-bucket/cache"]
    options = PipelineOptions(argv)
    pipeline = beam.Pipeline(runner="FnApiRunner", options=options)
    extract.build(pipeline, options)
    proto = pipeline.to_runner_api()  # pickles every DoFn
    names = {t.unique_name for t in proto.components.transforms.values()}
    assert {"ExtractJourneys", "EmbedCatalogue", "GroupByShard", "Publish", "WriteDeadLetters"} <= names
    assert options.view_as(GoogleCloudOptions).project == "demo-project"
    assert options.view_as(SetupOptions).setup_file == "./setup.py"
    assert list(tmp_path.iterdir()) == []  # building the graph wrote nothing locally


def _hidden_grouping(small_sample, folder):
    """The sample with every title a meaningless id and no tags, and item vectors that carry the
    planted topics (hidden from the text): only the given vectors can show what goes together."""
    import numpy as np

    truth = io.read_table(small_sample["truth"]).to_pylist()
    topic_of = {r["item_id"]: r["topic_id"] for r in truth if r["topic_id"] is not None}
    topics = sorted(set(topic_of.values()))
    rng = np.random.default_rng(0)
    items = io.read_table(small_sample["items"]).to_pylist()
    vectors = []
    width = len(topics) + 16
    for item in items:
        vector = rng.normal(0, 0.06, width)
        if item["item_id"] in topic_of:
            vector[topics.index(topic_of[item["item_id"]])] += 1.0
        vectors.append(vector.tolist())
    plain = [{"item_id": it["item_id"], "title": f"item {n}", "tags": [], "category": None, "text": None}
             for n, it in enumerate(items)]
    return plain, vectors


def test_given_item_vectors_recover_a_grouping_the_text_does_not_show(small_sample, embedding_cache, tmp_path):
    import pyarrow as pa

    plain, vectors = _hidden_grouping(small_sample, tmp_path)
    truth = io.read_table(small_sample["truth"])
    with_column = tmp_path / "items.parquet"
    io.write_table(pa.Table.from_pylist([{**it, "embedding": v} for it, v in zip(plain, vectors)]), str(with_column))
    summary = _run(small_sample["events"], str(with_column), tmp_path / "given", embedding_cache,
                   "--representation", "embedding")
    journeys = io.read_table(str(tmp_path / "given" / "journeys"))
    given = evaluate(zip(journeys["user_id"].to_pylist(), journeys["item_ids"].to_pylist()), truth)
    assert given["journey_recall"] >= 0.75 and given["journey_precision"] >= 0.75
    assert [b["name"] for b in summary["representation"]["blocks"]] == ["embedding"]
    assert summary["representation"]["blocks"][0]["dimension"] == len(vectors[0])

    # The same vectors as a separate table, one of them missing and one for an item that does not exist.
    vector_rows = [{"item_id": it["item_id"], "embedding": v} for it, v in zip(plain, vectors)]
    missing = vector_rows.pop(0)["item_id"]
    vector_rows.append({"item_id": "no-such-item", "embedding": vectors[0]})
    separate = tmp_path / "vectors.parquet"
    io.write_table(pa.Table.from_pylist(vector_rows), str(separate))
    only_text = tmp_path / "plain.parquet"
    io.write_table(pa.Table.from_pylist(plain), str(only_text))
    summary = _run(small_sample["events"], str(only_text), tmp_path / "file", embedding_cache,
                   "--item_vectors", str(separate))
    assert [b["name"] for b in summary["representation"]["blocks"]] == ["text", "tags", "embedding", "sessions"]
    assert summary["items"]["rejected_by_reason"] == {"missing_vector": 1} and summary["items"]["balanced"]
    assert summary["item_vectors"]["rejected_by_reason"] == {"unknown_item": 1}
    dead = io.read_table(str(tmp_path / "file" / "dead_letter")).to_pylist()
    assert {(d["source"], d["reason"], d["item_id"]) for d in dead if d["source"] != "events"} == {
        ("items", "missing_vector", missing), ("item_vectors", "unknown_item", "no-such-item")}
    assert summary["events"]["balanced"]


def test_vectors_given_two_ways_or_asked_for_without_vectors_are_refused(small_sample, embedding_cache, tmp_path):
    with pytest.raises(ValueError, match="needs item vectors"):
        _run(small_sample["events"], small_sample["items"], tmp_path / "x", embedding_cache,
             "--representation", "text,embedding")
