"""The naming pipeline: RunInference with our ModelHandler, on the extraction test run's journeys."""

import pyarrow as pa
from step_outputs import write_step_output

from journeys import io, schema
from pipelines import name


def test_every_journey_is_named_once_with_distinct_names_per_user(journeys_dir, tmp_path):
    summary = name.run(["--journeys", journeys_dir, "--out", str(tmp_path), "--namer", "keywords"],
                       save_main_session=False)
    journeys = io.read_table(journeys_dir)
    named = io.read_table(str(tmp_path / "named"))
    assert summary["balanced"] and summary["named"] == journeys.num_rows and summary["failed"] == 0
    assert sorted(named["journey_id"].to_pylist()) == sorted(journeys["journey_id"].to_pylist())
    assert named.schema.equals(schema.NAMED_JOURNEYS, check_metadata=False)
    rows = named.to_pylist()
    assert all(r["name"] and r["naming_strategy"] == "keywords" and 0 < r["grounding"] <= 1 for r in rows)
    per_user: dict[str, list[str]] = {}
    for row in rows:
        per_user.setdefault(row["user_id"], []).append(row["name"].casefold())
    assert all(len(names) == len(set(names)) for names in per_user.values())


def test_a_journey_that_cannot_be_named_is_dead_lettered_not_lost(journeys_dir, tmp_path):
    table = io.read_table(journeys_dir)
    rows = table.to_pylist()
    rows[0]["centroid"] = [0.5, 0.5]  # the wrong width for the model: naming this user must fail
    write_step_output(pa.Table.from_pylist(rows, schema=schema.JOURNEYS), tmp_path / "in", "part.parquet")
    summary = name.run(["--journeys", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--batch_size", "1",
                        "--namer", "keywords"],
                       save_main_session=False)
    assert summary["balanced"] and summary["failed"] >= 1 and summary["named"] == len(rows) - summary["failed"]
    dead = io.read_table(str(tmp_path / "out" / "dead_letter")).to_pylist()
    assert rows[0]["user_id"] in {d["user_id"] for d in dead}
    assert all(d["reason"] == "naming_failed" and "centroid" in d["detail"] for d in dead)


def test_a_fresh_name_that_repeats_a_carried_one_is_numbered_and_grounded_as_numbered(journeys_dir):
    from journeys.embedding import Embedder
    from journeys.naming.grounding import grounding_scores

    rows = io.read_table(journeys_dir).to_pylist()
    user = next(r["user_id"] for r in rows if sum(o["user_id"] == r["user_id"] for o in rows) >= 2)
    first, second = [r for r in rows if r["user_id"] == user][:2]
    carried = {**first, "name": "Crime Thriller", "grounding": 0.5, "naming_decision": "carried"}
    fresh = {**second, "name": "Crime Thriller", "grounding": 0.6, "naming_decision": "named"}
    distinct = name._DistinctNames("all-MiniLM-L6-v2", 1)
    unique = list(distinct.process((user, [{**carried, "name": "Heist Films"}, fresh])))
    assert {r["name"] for r in unique} == {"Heist Films", "Crime Thriller"} and distinct.embedder is None
    out = {r["journey_id"]: r for r in distinct.process((user, [fresh, carried]))}
    assert out[first["journey_id"]] == carried  # consumers already hold the carried name
    renamed = out[second["journey_id"]]
    assert renamed["name"] == "Crime Thriller (2)"
    expected = grounding_scores(Embedder("all-MiniLM-L6-v2"), ["Crime Thriller (2)"], [second])[0]
    assert abs(renamed["grounding"] - expected) < 1e-6 and renamed["grounding"] != fresh["grounding"]
