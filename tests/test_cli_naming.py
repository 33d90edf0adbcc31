"""Training pairs, tuning and LLM naming from the command line, through the Beam naming pipeline."""

import json
from pathlib import Path

import pytest

from journeys import cli, io


@pytest.fixture(scope="module")
def pairs_file(small_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    assert cli.main(["tune", "pairs", "--sample", str(Path(small_sample["truth"]).parent), "--out", str(out)]) == 0
    return out


def test_tune_pairs_mixes_the_bank_and_the_sample_train_topics(pairs_file):
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    sources = {row["source"] for row in rows}
    assert sources == {"bank", "sample"} and all(row["titles"] and row["name"] for row in rows)


def test_finetune_then_name_with_the_adapter_through_the_pipeline(pairs_file, tiny_models, journeys_dir,
                                                                 tmp_path, capsys):
    adapter = str(tmp_path / "adapter")
    assert cli.main(["tune", "finetune", "--base", tiny_models["llama"], "--train", str(pairs_file),
                     "--out", adapter, "--steps", "2", "--batch_size", "8"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["method"] == "lora" and trained["pairs"] > 100
    assert cli.main(["name", "--journeys", journeys_dir, "--out", str(tmp_path / "named"), "--namer", "fine-tuned",
                     "--adapter", adapter]) == 0
    summary = json.loads(capsys.readouterr().out)
    named = io.read_table(str(tmp_path / "named" / "named")).to_pylist()
    assert summary["named"] == len(named) == io.read_table(journeys_dir).num_rows and summary["failed"] == 0
    assert {(r["naming_strategy"], r["adapter"], r["template_version"]) for r in named} == {
        ("fine-tuned", adapter, "tuned/v2")}
    assert all(r["name"] and (r["fallback_reason"] is not None) == r["fell_back"] for r in named)


def test_naming_errors_are_clear_before_anything_runs(journeys_dir, tmp_path, capsys):
    assert cli.main(["name", "--journeys", journeys_dir, "--out", str(tmp_path), "--namer", "prompt-tuned"]) == 2
    assert "needs --adapter" in capsys.readouterr().err
    (tmp_path / "adapter").mkdir()  # apart from --out: an output inside an input is refused
    assert cli.main(["name", "--journeys", journeys_dir, "--out", str(tmp_path / "o"), "--namer", "fine-tuned",
                     "--adapter", str(tmp_path / "adapter")]) == 2
    assert "journeys_adapter.json is missing" in capsys.readouterr().err
    assert cli.main(["tune", "prompt", "--train", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "a")]) == 2
    assert "none.jsonl" in capsys.readouterr().err


def test_llm_namer_settings_reach_the_namer_from_the_pipeline_options():
    from pipelines.name import NameOptions, namer_options

    opts = NameOptions(["--namer", "few-shot", "--max_titles", "5", "--exemplars", "2", "--min_grounding", "0.4",
                        "--candidates", "3", "--model_answers_only", "--quantize", "none", "--skip_grounded", "0.7"])
    assert namer_options(opts) | {"encoder": None} == {
        "encoder": None, "model": None, "adapter": None, "max_titles": 5, "exemplars": 2, "min_grounding": 0.4,
        "candidates": 3, "keyword_candidate": False, "quantize": "none", "skip_grounded": 0.7}
    # above 1 no keyword name is grounded enough: the model is asked for every journey
    assert namer_options(NameOptions(["--namer", "few-shot", "--skip_grounded", "1.5"]))["skip_grounded"] is None
    assert namer_options(NameOptions(["--namer", "few-shot"]))["keyword_candidate"]
