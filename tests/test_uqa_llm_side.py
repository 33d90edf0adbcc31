"""The LLM side of UQABench: frozen LLM, integration modes, alignment, evaluation and baselines."""

import contextlib
import io as text_io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from eval.uqabench.questions import build
from journeys import cli, io
from journeys.sample.generator import SampleConfig, generate
from journeys.uqa_questions import BuildConfig
from journeys.uqa_scoring import score
from tuning.sequence_encoders import SequenceEncoderConfig, pretrain
from tuning.uqa_adapters import (
    AdapterConfig,
    CrossAttentionAdapter,
    PerceiverResampler,
    SoftPrompt,
    UserLLM,
    build_adapter,
)
from tuning.uqa_align import (
    AlignConfig,
    align,
    evaluate_aligned,
    evaluate_baseline,
    load_aligned,
    read_embeddings,
)
from tuning.uqa_llm import (
    LlmConfig,
    PromptBuilder,
    SplitConfig,
    left_pad,
    load_llm,
    load_question_data,
    split_users,
    train_llm,
)

TINY_LLM = LlmConfig(hidden=32, layers=2, heads=2, context=96, epochs=1, batch_size=32, question_seeds=1)
FAST = AlignConfig(epochs=3, batch_size=16, learning_rate=5e-3)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 16-user sample, its question set, a tiny built-in LLM and a tiny sequence encoder."""
    folder = tmp_path_factory.mktemp("uqa-llm")
    data = generate(SampleConfig(users=16, seed=5, items_per_topic=6))
    paths = {"events": str(folder / "events.parquet"), "items": str(folder / "items.parquet"),
             "questions": str(folder / "q"), "llm": str(folder / "llm"), "encoder": str(folder / "enc")}
    io.write_table(data.events, paths["events"])
    io.write_table(data.items, paths["items"])
    build(paths["events"], paths["items"], paths["questions"], BuildConfig())
    qdata = load_question_data(paths["questions"], paths["items"])
    train_llm(qdata, TINY_LLM, SplitConfig(), paths["llm"])
    from journeys.uqa_questions import read_inputs

    inputs = read_inputs(paths["events"], paths["items"])
    pretrain(inputs.events, inputs.items, SequenceEncoderConfig(kind="gru4rec", dim=16, layers=1, max_len=20, epochs=1,
                                                                dropout=0.0), paths["encoder"])
    return {**paths, "data": qdata}


def _states(batch: int, steps: int, width: int):
    torch.manual_seed(1)
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[0, steps // 2:] = False
    return torch.randn(batch, steps, width), mask


def _prompts(world, n=3):
    tokenizer, llm = load_llm(world["llm"])
    builder = PromptBuilder(tokenizer, world["data"].items, 96)
    ids, mask = left_pad([builder.prompt(q, None) for q in world["data"].questions[:n]], tokenizer.pad_token_id)
    return tokenizer, llm, ids, mask


def test_user_split_is_deterministic_disjoint_and_stable():
    users = [f"u{i:03d}" for i in range(200)]
    train, held = split_users(users, SplitConfig(0.3, 0))
    assert set(train).isdisjoint(held) and len(train) + len(held) == 200 and 40 < len(held) < 80
    more_train, more_held = split_users(users + ["extra1", "extra2"], SplitConfig(0.3, 0))
    assert set(held) <= set(more_held) and set(train) <= set(more_train)
    assert split_users(users, SplitConfig(0.3, 1)) != (train, held)


def test_text_prompt_is_cut_to_the_context_and_letters_decode_exactly(world):
    tokenizer, _ = load_llm(world["llm"])
    data = world["data"]
    question = next(q for q in data.questions if q["subtask"] == "long_term_interests")  # short options
    builder = PromptBuilder(tokenizer, data.items, 96)
    with_history = builder.prompt(question, data.histories[question["user_id"]])
    without = builder.prompt(question, None)
    assert len(without) < len(with_history) <= 96
    assert "History" in tokenizer.decode(with_history) and "History" not in tokenizer.decode(without)
    assert tokenizer.decode(builder.answer("C"), skip_special_tokens=True) == "C"
    assert tokenizer.unk_token_id not in without  # the tokenizer covers the question set's words


def test_zero_gates_leave_the_frozen_llm_unchanged(world):
    _, llm, ids, mask = _prompts(world)
    adapter = build_adapter(AdapterConfig(mode="xattn"), 10, 32, 2)
    assert isinstance(adapter, CrossAttentionAdapter) and len(adapter.blocks) == 2
    model = UserLLM(llm, adapter)
    states, state_mask = _states(3, 5, 10)
    with torch.no_grad():
        plain = UserLLM(llm)(ids, mask)
        assert torch.equal(plain, model(ids, mask, states, state_mask))
        for block in adapter.blocks:  # an opened gate does change the outputs: the blocks are wired in
            block.attention_gate.fill_(1.0)
        assert not torch.equal(plain, model(ids, mask, states, state_mask))
        assert torch.equal(plain, UserLLM(llm)(ids, mask))  # without a user, still unchanged


def test_soft_prompt_tokens_come_first(world):
    _, llm, ids, mask = _prompts(world)
    states, state_mask = _states(3, 5, 10)
    seen = {}
    for tokens in (1, 3):
        adapter = SoftPrompt(10, 32, tokens)
        seen.clear()
        handle = llm.model.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
        with torch.no_grad():
            logits = UserLLM(llm, adapter)(ids, mask, states, state_mask)
            expected = adapter(states, state_mask)
        handle.remove()
        assert expected.shape == (3, tokens, 32)
        assert logits.shape[:2] == ids.shape  # soft positions are dropped from the output
        embeds = seen["inputs_embeds"]
        assert embeds.shape[1] == ids.shape[1] + tokens and torch.equal(embeds[:, :tokens], expected)
    # UQABench's one token is the projection of the masked mean of the states
    one = SoftPrompt(10, 32, 1)
    mean = torch.stack([states[0, :2].mean(0), states[1].mean(0), states[2].mean(0)])
    assert torch.allclose(one(states, state_mask)[:, 0], one.project(mean), atol=1e-6)


@pytest.mark.parametrize("steps", [1, 7])
def test_perceiver_compresses_any_length_to_m_tokens(steps):
    resampler = PerceiverResampler(10, 32, latents=4, layers=2, heads=4)
    states, mask = _states(3, steps, 10)
    mask[:, 0] = True
    assert resampler(states, mask).shape == (3, 4, 32)


def _eval_set(world):
    from tuning.uqa_align import eval_questions

    return eval_questions(world["data"], SplitConfig())


def test_align_lowers_the_loss_and_reloads_to_identical_predictions(world, tmp_path):
    aligned = align(world["data"], world["llm"], {"source": "sequence", "path": world["encoder"]},
                    AdapterConfig(mode="soft", soft_tokens=2), FAST, out=str(tmp_path / "a"), context=96)
    metrics = aligned.metadata["metrics"]
    assert metrics["loss_after"] < metrics["loss_before"]
    first = evaluate_aligned(aligned, world["data"])
    again = evaluate_aligned(load_aligned(str(tmp_path / "a"), world["data"]), world["data"])
    assert first["predictions"] == again["predictions"] and first["accuracy"] == again["accuracy"]
    # the evaluation users were never aligned on
    assert aligned.metadata["data"]["train_questions"] + len(first["predictions"]) == len(world["data"].questions)


def test_practice_questions_train_the_training_users_and_never_reach_evaluation(world, tmp_path):
    build(world["events"], world["items"], str(tmp_path / "q"), BuildConfig(practice=2))
    data = load_question_data(str(tmp_path / "q"), world["items"])
    assert data.questions == world["data"].questions and data.practice
    train_users, eval_users = split_users({q["user_id"] for q in data.questions}, SplitConfig())
    aligned = align(data, world["llm"], {"source": "random"}, AdapterConfig(), AlignConfig(steps=1, batch_size=8),
                    context=96)
    counts = aligned.metadata["data"]
    own = sum(q["user_id"] in set(train_users) for q in data.questions)
    assert counts["practice_questions"] == sum(q["user_id"] in set(train_users) for q in data.practice) > 0
    assert counts["train_questions"] == own + counts["practice_questions"]
    evaluated = evaluate_aligned(aligned, data)["predictions"]
    assert set(evaluated) == {q["question_id"] for q in data.questions if q["user_id"] in set(eval_users)}


def test_evaluate_scores_with_the_uqabench_rule(world, tmp_path):
    aligned = align(world["data"], world["llm"], {"source": "random"}, AdapterConfig(mode="perceiver", latents=2),
                    AlignConfig(epochs=1), context=96)
    report = evaluate_aligned(aligned, world["data"])
    questions = {q["question_id"]: q for q in _eval_set(world)}
    assert set(report["predictions"]) == set(questions)
    correct = sum(score(p, questions[q]["answer"]) for q, p in report["predictions"].items())
    assert report["accuracy"]["overall"]["correct"] == correct
    assert set(report["accuracy"]["dimensions"]) == {"sequence_understanding", "action_prediction",
                                                     "interest_perception"}
    assert report["prompt_tokens"] > 2  # the question plus M = 2 latent tokens


def test_baselines_run_and_only_text_pays_for_the_history(world):
    none = evaluate_baseline("none", world["data"], world["llm"])
    text = evaluate_baseline("text", world["data"], world["llm"])
    assert none["accuracy"]["overall"]["total"] == text["accuracy"]["overall"]["total"] > 0
    assert none["prompt_tokens"] < text["prompt_tokens"] <= 96


@pytest.mark.parametrize("strategy", ["lora", "encoder"])
def test_other_strategies_train_and_reload(strategy, world, tmp_path):
    mode = "xattn" if strategy == "lora" else "soft"
    aligned = align(world["data"], world["llm"], {"source": "sequence", "path": world["encoder"]},
                    AdapterConfig(mode=mode), AlignConfig(strategy=strategy, epochs=1), out=str(tmp_path / "a"),
                    context=96)
    first = evaluate_aligned(aligned, world["data"])["predictions"]
    assert evaluate_aligned(load_aligned(str(tmp_path / "a"), world["data"]), world["data"])["predictions"] == first
    fresh = load_llm(world["llm"])[1].state_dict()  # the base LLM's own weights never change
    trained = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
               for k, v in aligned.model.llm.state_dict().items() if "lora_" not in k}
    assert set(fresh) <= set(trained) and all(torch.equal(fresh[k], trained[k]) for k in fresh)


def _write_embeddings(path, rows):
    table = pa.table({"user_id": [r[0] for r in rows], "encoder": ["journey"] * len(rows),
                      "version": ["1-x"] * len(rows),
                      "embedding": pa.array([list(r[1]) for r in rows], type=pa.list_(pa.float32()))})
    io.write_table(table, f"{path}/embeddings/part-0.parquet")
    return str(path)


def test_bad_input_gets_a_clear_error(world, tmp_path):
    users = sorted(world["data"].histories)
    some = _write_embeddings(tmp_path / "some", [(u, np.ones(6)) for u in users[:3]])
    with pytest.raises(ValueError, match="have no embedding"):
        align(world["data"], world["llm"], {"source": "embeddings", "path": some}, AdapterConfig(), FAST, context=96)
    mixed = _write_embeddings(tmp_path / "mixed", [(u, np.ones(6 + (i % 2))) for i, u in enumerate(users)])
    with pytest.raises(ValueError, match="mixed widths"):
        read_embeddings(mixed)
    full = _write_embeddings(tmp_path / "full", [(u, np.ones(6)) for u in users])
    align(world["data"], world["llm"], {"source": "embeddings", "path": full}, AdapterConfig(),
          AlignConfig(epochs=1), out=str(tmp_path / "a"), context=96)
    _write_embeddings(tmp_path / "full", [(u, np.ones(9)) for u in users])  # re-encoded with another width
    with pytest.raises(ValueError, match="aligned on 6"):
        load_aligned(str(tmp_path / "a"), world["data"])
    with pytest.raises(ValueError, match="adapter expects 6"):
        model = UserLLM(load_llm(world["llm"])[1], build_adapter(AdapterConfig(), 6, 32, 2))
        model(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), *_states(1, 2, 9))
    with pytest.raises(ValueError, match="trains a sequence encoder"):
        align(world["data"], world["llm"], {"source": "random"}, AdapterConfig(), AlignConfig(strategy="encoder"))
    with pytest.raises(ValueError, match="unknown integration mode"):
        AdapterConfig(mode="qformer")
    with pytest.raises(ValueError, match="would test it on its own training users"):
        evaluate_baseline("none", world["data"], world["llm"], SplitConfig(0.5, 3))


def test_cli_align_and_evaluate(world, tmp_path):
    common = ["--questions", world["questions"], "--items", world["items"]]
    printed = text_io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["uqabench", "align", *common, "--llm", world["llm"], "--random", "--out",
                         str(tmp_path / "a"), "--epochs", "1", "--context", "96"]) == 0
        assert cli.main(["uqabench", "evaluate", *common, "--aligned", str(tmp_path / "a"), "--out",
                         str(tmp_path / "r.json"), "--predictions", str(tmp_path / "p.jsonl")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["source"]["source"] == "random" and report["accuracy"]["overall"]["total"] > 0
    assert report["run"]["answer"] == "option-pmi"  # the default, kept in the aligned folder
    errors = text_io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert cli.main(["uqabench", "evaluate", *common, "--aligned", str(tmp_path / "a"), "--answer", "letter"]) == 2
    assert "the mode it was aligned with" in errors.getvalue()
    with contextlib.redirect_stdout(text_io.StringIO()):
        assert cli.main(["uqabench", "score", "--questions", world["questions"], "--predictions",
                         str(tmp_path / "p.jsonl")]) == 0
    errors = text_io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert cli.main(["uqabench", "align", *common, "--llm", world["llm"], "--out", str(tmp_path / "b")]) == 2
    assert "exactly one user source" in errors.getvalue()


@pytest.mark.parametrize("mode", ["soft", "xattn"])
def test_any_hugging_face_causal_model_can_be_the_llm(mode, world, tiny_models):
    """A GPT-2 with another tokenizer (transformer.h layers, no uqa_llm.json): the default split applies."""
    aligned = align(world["data"], tiny_models["causal"], {"source": "random"}, AdapterConfig(mode=mode),
                    AlignConfig(epochs=1), context=96)
    report = evaluate_aligned(aligned, world["data"])
    assert report["accuracy"]["overall"]["total"] == len(_eval_set(world))
    assert all(isinstance(p, str) for p in report["predictions"].values())


def test_cli_builds_the_llm_and_runs_the_baselines(world, tmp_path):
    common = ["--questions", world["questions"], "--items", world["items"]]
    llm = str(tmp_path / "llm")
    with contextlib.redirect_stdout(text_io.StringIO()):
        assert cli.main(["uqabench", "llm", *common, "--out", llm, "--hidden", "16", "--layers", "1", "--heads", "2",
                         "--context", "64", "--epochs", "1", "--question_seeds", "0"]) == 0
    metadata = json.loads((tmp_path / "llm" / "uqa_llm.json").read_text())
    assert metadata["split"] == {"eval_share": 0.3, "split_seed": 0} and metadata["config"]["context"] == 64
    for baseline in ("none", "text"):
        printed = text_io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert cli.main(["uqabench", "evaluate", *common, "--baseline", baseline, "--llm", llm]) == 0
        report = json.loads(printed.getvalue())
        assert report["run"]["context"] == 64 and report["accuracy"]["overall"]["total"] == len(_eval_set(world))
        assert report["run"]["answer"] == ("option" if baseline == "none" else "option-pmi")
    errors = text_io.StringIO()
    with contextlib.redirect_stderr(errors):
        assert cli.main(["uqabench", "evaluate", *common, "--baseline", "text", "--aligned", llm]) == 2
    assert "give --aligned" in errors.getvalue()


def test_sequence_encoder_embeddings_from_journeys_encode_align_like_any_table(world, tmp_path):
    """`journeys encode --encoder gru4rec` over the question set's history: one vector per user, the
    state after their last history event, which alignment reads like the journey encoder's table."""
    from pipelines import encode
    from tuning.sequence_encoders import load_encoder

    history = str(Path(world["questions"]) / "history.parquet")
    summary = encode.run(["--events", history, "--user_encoder", "gru4rec", "--sequence_model", world["encoder"],
                          "--users", str(Path(world["questions"]) / "questions.jsonl"), "--out",
                          str(tmp_path / "emb")], save_main_session=False)
    users = sorted(world["data"].histories)
    assert summary["users"]["encoded"] == len(users) and summary["users"]["without_events"] == 0
    source = read_embeddings(str(tmp_path / "emb"))
    encoder, _ = load_encoder(world["encoder"])
    index = {item_id: i + 1 for i, item_id in enumerate(encoder.vocabulary.item_ids)}
    steps = [index[i] for i in world["data"].histories[users[0]]][-encoder.config.max_len:]
    with torch.no_grad():
        last = encoder.user_embedding(torch.tensor([steps]), torch.tensor([len(steps)]))[0]
    assert np.allclose(source.vectors[users[0]], last.numpy(), atol=1e-6)
    aligned = align(world["data"], world["llm"], {"source": "embeddings", "path": str(tmp_path / "emb")},
                    AdapterConfig(), AlignConfig(epochs=1), context=96)
    assert aligned.metadata["width"] == 16 and aligned.metadata["source"]["version"].startswith("gru4rec ")


def test_init_std_sets_the_scale_of_the_built_in_llms_initial_weights():
    from tuning.uqa_llm import build_decoder

    def weight_std(std):
        config = LlmConfig(hidden=32, layers=1, heads=2, init_std=std)
        return float(build_decoder(200, config).get_input_embeddings().weight.detach().std())

    assert weight_std(0.02) == pytest.approx(0.02, rel=0.1) and weight_std(0.1) == pytest.approx(0.1, rel=0.1)
    with pytest.raises(ValueError, match="init_std must be positive"):
        LlmConfig(init_std=0)
