"""Extraction where every item shares one domain: the built-in sample's single-domain and bursty
modes, and a slice of MovieLens when the shared data is beside the project."""

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from eval.extraction import evaluate
from journeys import io
from journeys.sample.generator import SampleConfig, generate
from pipelines import extract

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens-small"


def _write(data, folder: Path) -> dict:
    paths = {name: str(folder / f"{name}.parquet") for name in ("events", "items", "truth")}
    for name, table in (("events", data.events), ("items", data.items), ("truth", data.truth)):
        io.write_table(table, paths[name])
    return paths


def _extract(paths: dict, out: Path, cache: str, *extra) -> dict:
    return extract.run(["--events", paths["events"], "--items", paths["items"], "--out", str(out),
                        "--embedding_cache", cache, *extra], save_main_session=False)


def _scores(out: Path, truth_path: str) -> dict:
    journeys = io.read_table(str(out / "journeys"))
    return evaluate(zip(journeys["user_id"].to_pylist(), journeys["item_ids"].to_pylist()), io.read_table(truth_path))


def test_centring_finds_the_sub_interests_of_one_domain(embedding_cache, tmp_path):
    paths = _write(generate(SampleConfig(users=30, seed=2, domain="music", items_per_topic=12)), tmp_path)
    _extract(paths, tmp_path / "centred", embedding_cache)
    centred = _scores(tmp_path / "centred", paths["truth"])
    _extract(paths, tmp_path / "raw", embedding_cache, "--centring", "none",
             "--threshold", "0.55", "--centroid_merge_threshold", "0.65", "--merge_threshold", "0.4")
    raw = _scores(tmp_path / "raw", paths["truth"])
    assert centred["journey_recall"] >= 0.85 and centred["journey_precision"] >= 0.85
    assert centred["ari"] > raw["ari"]


@pytest.mark.skipif(not MOVIELENS.exists(), reason="MovieLens is not beside the project")
def test_a_heavy_movielens_history_is_not_one_journey(embedding_cache, tmp_path):
    from journeys.movielens import convert

    convert(str(MOVIELENS), str(tmp_path / "ml"))
    events = io.read_table(str(tmp_path / "ml" / "events.parquet"))
    # Three users with 230-320 films: two rated them on 1-2 days, one over 30 days. Before centring
    # each one's largest cluster held 98-100% of their films (user 6: all 314).
    users = ["1", "6", "50"]
    slice_ = events.filter(pc.is_in(events["user_id"], value_set=pa.array(users)))
    io.write_table(slice_, str(tmp_path / "events.parquet"))
    paths = {"events": str(tmp_path / "events.parquet"), "items": str(tmp_path / "ml" / "items.parquet")}
    summary = _extract(paths, tmp_path / "out", embedding_cache)
    assert summary["events"]["balanced"] and summary["users"]["with_journeys"] == 3
    rows = io.read_table(str(tmp_path / "out" / "users")).to_pylist()
    journeys = io.read_table(str(tmp_path / "out" / "journeys")).to_pylist()
    for row in rows:
        largest = max(j["num_items"] for j in journeys if j["user_id"] == row["user_id"])
        assert largest / row["num_items"] < 0.6, (row["user_id"], largest, row["num_items"])
        assert row["persistence_rule"] == "log"  # one rating per film: a log, each item once
