"""Naming evaluation: metrics that move, reference sets without leakage, bootstrap intervals."""

import os

import pytest

from eval.naming import (
    bootstrap,
    evaluate_naming,
    movielens_reference_set,
    reference_scores,
    rouge_l,
    sample_reference_set,
)
from journeys import io
from journeys.embedding import Embedder
from journeys.naming import create_namer

MOVIELENS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-small")


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def reference_set(journeys_dir, small_sample):
    return sample_reference_set(io.read_table(journeys_dir).to_pylist(), small_sample["truth"])


def test_reference_metrics_reward_the_reference_and_not_an_unrelated_name(embedder):
    same = reference_scores(["Sock Knitting"], ["sock knitting"], embedder)
    other = reference_scores(["Formula One Racing"], ["sock knitting"], embedder)
    for metric in ("bleu", "rouge_l", "chrf", "exact_match"):
        assert same[metric][0] == pytest.approx(1.0) and other[metric][0] < 0.3
    assert same["semantic"][0] > 0.99 > 0.5 > other["semantic"][0]
    # LCS "budget travel": precision 2/4, recall 2/3, F1 4/7
    assert rouge_l("Budget travel in Japan", "japan budget travel") == pytest.approx(4 / 7)


def test_bootstrap_interval_brackets_the_mean_and_is_reproducible():
    values = [0.0, 1.0] * 20
    first, second = bootstrap(values, 500), bootstrap(values, 500)
    assert first == second and first["low"] < first["mean"] == 0.5 < first["high"]
    assert bootstrap([], 100)["mean"] is None


def test_only_test_topics_are_references(reference_set, small_sample):
    truth = io.read_table(small_sample["truth"]).to_pylist()
    test_names = {r["reference_name"] for r in truth if r["split"] == "test" and r["reference_name"]}
    scored = [r for r in reference_set.references if r]
    assert scored and set(scored) <= test_names


def test_comparison_has_intervals_and_paired_differences(reference_set, embedder, tiny_models):
    namers = {"keywords": create_namer("keywords"),
              "few-shot": create_namer("few-shot", model=tiny_models["llama"])}
    report = evaluate_naming(reference_set, namers, embedder, resamples=200)
    keywords, few_shot = report["strategies"]["keywords"], report["strategies"]["few-shot"]
    for metric in ("semantic", "rouge_l", "chrf", "bleu", "exact_match", "grounding", "fallback"):
        value = keywords["metrics"][metric]
        assert value["low"] <= value["mean"] <= value["high"] and value["n"] > 0
    assert few_shot["cost"]["prompt_tokens_per_name"] > 50 and keywords["cost"]["names_per_s"] > 0
    means = {name: result["metrics"]["semantic"]["mean"] for name, result in report["strategies"].items()}
    difference = few_shot["vs_keywords"]["semantic"]["mean"]
    assert difference == pytest.approx(means["few-shot"] - means["keywords"], abs=1e-3)


def test_naming_the_whole_history_at_once_gives_every_journey_one_name(reference_set, embedder):
    report = evaluate_naming(reference_set, {"keywords": create_namer("keywords")}, embedder, resamples=50,
                             history_at_once=True)
    metrics = report["strategies"]["keywords"]["metrics"]
    assert metrics["duplicate"]["mean"] > 0.5  # users with several journeys now repeat one name
    assert metrics["specificity"]["mean"] < 1.0


@pytest.mark.skipif(not os.path.isdir(MOVIELENS), reason="MovieLens data not present")
def test_movielens_groups_are_journeys_named_by_held_out_tags(tmp_path, embedder):
    from journeys.movielens import convert
    from tuning.pairs import movielens_split

    convert(MOVIELENS, str(tmp_path))
    reference_set = movielens_reference_set(str(tmp_path), embedder, limit=10)
    assert len(reference_set.journeys) == 10 and all(reference_set.references)
    assert all(len(j["item_ids"]) >= 3 and len(j["centroid"]) == embedder.dimension for j in reference_set.journeys)
    assert all(movielens_split(j["user_id"], r) == "test" for j, r in zip(reference_set.journeys,
                                                                           reference_set.references))
    held_out = movielens_reference_set(str(tmp_path), embedder)
    every = movielens_reference_set(str(tmp_path), embedder, groups="all")
    assert len(every.journeys) > 3 * len(held_out.journeys)  # one group in five is held out
    assert {j["journey_id"] for j in held_out.journeys} < {j["journey_id"] for j in every.journeys}
    assert any(movielens_split(j["user_id"], r) == "train" for j, r in zip(every.journeys, every.references))
    with pytest.raises(ValueError, match="held-out, all"):
        movielens_reference_set(str(tmp_path), embedder, groups="train")


def test_all_movielens_groups_are_refused_for_an_adapter_trained_on_movielens(tmp_path, capsys):
    import json

    from journeys import cli

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "journeys_adapter.json").write_text(json.dumps({"sources": {"bank": 40, "movielens": 225}}))
    args = ["eval", "naming", "--movielens", str(tmp_path / "ml"), "--movielens_groups", "all",
            "--strategies", "keywords,fine-tuned", "--finetune_adapter", str(adapter)]
    assert cli.main(args) == 2  # before any work: the MovieLens folder is not even read
    error = capsys.readouterr().err
    assert "trained on 225 MovieLens pairs" in error and "--movielens_groups held-out" in error


def test_a_keyword_name_that_wins_on_grounding_is_not_counted_as_a_failed_answer(embedder):
    from eval.naming import free_scores
    from journeys.naming.base import NameResult

    journeys = [{"user_id": "u", "journey_id": f"j{i}", "centroid": embedder.encode(["sourdough bread"])[0].tolist()}
                for i in range(3)]
    results = [NameResult("j0", "Sourdough Baking", "few-shot", "m", None, "v", 0.9),
               NameResult("j1", "Bread Baking", "few-shot", "m", None, "v", 0.8, True,
                          "keyword name chosen (closer to the journey than every model answer): 'Cakes'"),
               NameResult("j2", "Sourdough", "few-shot", "m", None, "v", 0.7, True,
                          "model answer rejected (12 words > 8): 'a b c'")]
    scores = free_scores(journeys, results, embedder)
    assert scores["fallback"] == [0.0, 0.0, 1.0] and scores["keyword_chosen"] == [0.0, 1.0, 0.0]


def test_fallback_reasons_are_counted_by_kind_without_answers_or_scores():
    from eval.naming import reason_kind

    assert reason_kind("model answer rejected (not grounded: 0.12 < 0.2): 'Painted Dollar'") == \
        "model answer rejected (not grounded < 0.2)"
    assert reason_kind("model answer rejected (12 words > 8): 'a b c'") == "model answer rejected (12 words > 8)"
    assert reason_kind("no answer") == "no answer"


def test_a_limit_keeps_whole_users_until_enough_journeys_are_scored(journeys_dir, small_sample, reference_set):
    limited = sample_reference_set(io.read_table(journeys_dir).to_pylist(), small_sample["truth"], limit=2)
    users = [j["user_id"] for j in limited.journeys]
    scored_before_last_user = sum(1 for j, r in zip(limited.journeys, limited.references)
                                  if r and j["user_id"] != users[-1])
    assert sum(1 for r in limited.references if r) >= 2 > scored_before_last_user
    full = [j["journey_id"] for j in reference_set.journeys]
    assert [j["journey_id"] for j in limited.journeys] == full[:len(limited.journeys)]  # whole users, in order
    assert len([j for j in reference_set.journeys if j["user_id"] == users[-1]]) == users.count(users[-1])


def test_eval_naming_runs_on_the_threads_asked_for_and_records_them(journeys_dir, small_sample, tmp_path):
    import json

    import torch

    from journeys import cli

    before = torch.get_num_threads()
    try:
        assert cli.main(["eval", "naming", "--journeys", journeys_dir, "--truth", small_sample["truth"],
                         "--strategies", "keywords", "--limit", "3", "--torch_threads", "2",
                         "--out", str(tmp_path / "ev.json")]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    report = json.loads((tmp_path / "ev.json").read_text())
    assert report["settings"]["torch_threads"] == 2 and "keywords" in report["strategies"]
