"""Training pairs and the tuned namers: train a few steps on tiny models, save, reload, reproduce."""

import json
import os

import pytest

from journeys import io
from journeys.naming.generation import ADAPTER_METADATA, load_generator
from journeys.naming.prompting import load_exemplars
from tuning.pairs import Pair, build_pairs, movielens_pairs, pairs_hash, read_pairs, write_pairs
from tuning.train import TuneConfig, prompt_for, train

MOVIELENS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-small")

PAIRS = [
    Pair(("Knitting socks for beginners", "Choosing sock yarn", "Heel turns explained"), ("knitting", "socks"),
         "Sock Knitting", "test"),
    Pair(("Rotating tyres at home", "Checking brake pads", "Oil change in 10 minutes"), ("car", "diy"),
         "Home Car Maintenance", "test"),
    Pair(("Sunrise over the Dolomites", "Packing for a hut trek"), ("hiking", "alps"), "Alpine Hut Trekking",
         "test"),
] * 4


def _test_topic_titles(truth_path: str, items_path: str) -> set[str]:
    truth = io.read_table(truth_path).to_pylist()
    test_items = {r["item_id"] for r in truth if r["split"] == "test" and r["kind"] != "noise"}
    return {r["title"] for r in io.read_table(items_path).to_pylist() if r["item_id"] in test_items}


def test_test_topics_never_enter_training(small_sample, tmp_path):
    truth = io.read_table(small_sample["truth"]).to_pylist()
    test_name = next(r["reference_name"] for r in truth if r["split"] == "test" and r["reference_name"])
    # A bank that (wrongly) holds a test topic's name: it must be dropped, and counted.
    bank = tmp_path / "bank.jsonl"
    bank.write_text(json.dumps({"titles": ["a", "b"], "keywords": [], "name": test_name.upper()}) + "\n"
                    + json.dumps({"titles": ["c", "d"], "keywords": [], "name": "Sock Knitting"}) + "\n")
    pairs, counts = build_pairs(small_sample["truth"], small_sample["items"], bank=str(bank))
    assert counts["dropped_test_topic_names"] == 1 and counts["sample"] > 0
    train_names = {r["reference_name"].casefold() for r in truth if r["split"] == "train" and r["reference_name"]}
    sample_pairs = [p for p in pairs if p.source == "sample"]
    assert {p.name.casefold() for p in sample_pairs} <= train_names
    assert not {t for p in pairs for t in p.titles} & _test_topic_titles(small_sample["truth"], small_sample["items"])
    assert test_name.casefold() not in {p.name.casefold() for p in pairs}


def test_the_curated_bank_holds_no_sample_topic_name():
    from journeys.sample.generator import load_topics

    topic_names = {t["name"].casefold() for t in load_topics()["topics"]}
    assert not {e.name.casefold() for e in load_exemplars()} & topic_names


@pytest.mark.skipif(not os.path.isdir(MOVIELENS), reason="MovieLens data not present")
def test_movielens_tags_given_to_three_movies_name_that_group(tmp_path):
    from journeys.movielens import convert

    convert(MOVIELENS, str(tmp_path))
    pairs = movielens_pairs(str(tmp_path / "user_tags.parquet"), str(tmp_path / "items.parquet"))
    tags = io.read_table(str(tmp_path / "user_tags.parquet")).to_pylist()
    titles = {r["item_id"]: r["title"] for r in io.read_table(str(tmp_path / "items.parquet")).to_pylist()}
    assert len(pairs) >= 20 and all(len(p.titles) >= 3 and p.source == "movielens" for p in pairs)
    held_out = movielens_pairs(str(tmp_path / "user_tags.parquet"), str(tmp_path / "items.parquet"), split="test")
    assert held_out and not {(p.name, p.titles) for p in held_out} & {(p.name, p.titles) for p in pairs}
    pair = pairs[0]
    tagged = {titles[r["item_id"]] for r in tags if r["tag"].casefold() == pair.name.casefold()}
    assert set(pair.titles) <= tagged


def test_pairs_round_trip_and_bad_pairs_are_refused_with_the_line(tmp_path):
    path = str(tmp_path / "pairs.jsonl")
    write_pairs(PAIRS, path)
    assert read_pairs(path) == PAIRS and pairs_hash(read_pairs(path)) == pairs_hash(PAIRS)
    (tmp_path / "bad.jsonl").write_text('{"titles": ["a"], "name": "Fine"}\n{"name": "no titles"}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_pairs(str(tmp_path / "bad.jsonl"))


@pytest.mark.parametrize("kind, method", [("llama", "prompt"), ("llama", "lora"), ("llama", "full"),
                                          ("gemma", "prompt"), ("gemma", "lora"), ("causal", "lora")])
def test_train_save_reload_reproduces_the_trained_namer(tiny_models, tmp_path, kind, method):
    config = TuneConfig(method=method, base=tiny_models[kind], steps=12, batch_size=4, virtual_tokens=4,
                        learning_rate={"prompt": 0.3, "lora": 0.01, "full": 0.01}[method])
    result = train(PAIRS, config, str(tmp_path / "namer"))
    metadata = json.loads((tmp_path / "namer" / ADAPTER_METADATA).read_text())
    assert metadata == result.metadata
    assert metadata["method"] == method and metadata["base_model"] == tiny_models[kind]
    assert metadata["template"] == "tuned/v2" and metadata["train_sha256"] == pairs_hash(PAIRS)
    metrics = metadata["metrics"]
    assert metrics["validation_loss_after"] < metrics["validation_loss_before"]  # it learned something
    prompts = [prompt_for(p, config) for p in PAIRS[:3]]
    reloaded = load_generator(adapter=str(tmp_path / "namer"))
    assert reloaded.generate(prompts, 3, 8) == result.generator.generate(prompts, 3, 8)


def test_training_is_reproducible_with_the_same_seed(tiny_models, tmp_path):
    config = TuneConfig(method="lora", base=tiny_models["llama"], steps=4, batch_size=4, learning_rate=0.01)
    first = train(PAIRS, config, str(tmp_path / "a")).metadata
    second = train(PAIRS, config, str(tmp_path / "b")).metadata
    assert first["metrics"] == second["metrics"]


def test_bad_tuning_settings_are_refused():
    with pytest.raises(ValueError, match="unknown tuning method"):
        TuneConfig(method="qlora")
    with pytest.raises(ValueError, match="steps"):
        TuneConfig(steps=0)


def test_steps_default_by_method_and_an_explicit_count_wins():
    assert TuneConfig().steps == 200  # LoRA: the measured setting
    assert TuneConfig(method="prompt").steps == 60 and TuneConfig(method="full").steps == 60
    assert TuneConfig(steps=7).steps == 7
