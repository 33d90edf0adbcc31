"""The LLM side of UQABench on the architectures of the packaged LLMs: Llama-style (SmolLM2) and
Gemma-3-style decoders built tiny from their configs, every integration mode and strategy, the
trained baselines at an equal step budget; then one short run on the real packaged SmolLM2."""

import contextlib
import importlib.util
import io as text_io
import json
import math

import pytest
import torch

from eval.uqabench.questions import build
from journeys import cli, io, llms
from journeys.sample.generator import SampleConfig, generate
from journeys.uqa_questions import LETTERS, BuildConfig, read_inputs
from tests.tiny_models import tiny_gemma, tiny_llama
from tuning.sequence_encoders import SequenceEncoderConfig, pretrain
from tuning.uqa_adapters import AdapterConfig, UserLLM, build_adapter, llm_layers, llm_width
from tuning.uqa_align import AlignConfig, _lora, align, evaluate_aligned, evaluate_baseline, load_aligned
from tuning.uqa_answers import OptionScorer, option_log_likelihoods
from tuning.uqa_llm import PromptBuilder, left_pad, lm_batch, load_llm, load_question_data

STEPS = AlignConfig(steps=3, batch_size=8, learning_rate=5e-3)
ARCHITECTURES = {"llama": tiny_llama, "gemma3": tiny_gemma}


def _question_set(folder, users: int):
    data = generate(SampleConfig(users=users, seed=5, items_per_topic=6))
    paths = {"events": str(folder / "events.parquet"), "items": str(folder / "items.parquet"),
             "questions": str(folder / "q")}
    io.write_table(data.events, paths["events"])
    io.write_table(data.items, paths["items"])
    build(paths["events"], paths["items"], paths["questions"], BuildConfig())
    return paths


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uqa-arch")
    paths = _question_set(folder, 12)
    inputs = read_inputs(paths["events"], paths["items"])
    paths["encoder"] = str(folder / "enc")
    pretrain(inputs.events, inputs.items, SequenceEncoderConfig(kind="llama", dim=16, layers=1, heads=2, max_len=20,
                                                                epochs=1, dropout=0.0), paths["encoder"])
    for name, make in ARCHITECTURES.items():
        paths[name] = make(str(folder / name))
    return {**paths, "data": load_question_data(paths["questions"], paths["items"])}


def _prompts(world, arch, n=3):
    tokenizer, llm = load_llm(world[arch])
    builder = PromptBuilder(tokenizer, world["data"].items, 128)
    ids, mask = left_pad([builder.prompt(q, None) for q in world["data"].questions[:n]], tokenizer.pad_token_id)
    return tokenizer, llm, ids, mask


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_zero_gates_leave_the_real_architecture_unchanged(world, arch):
    _, llm, ids, mask = _prompts(world, arch)
    adapter = build_adapter(AdapterConfig(mode="xattn"), 16, llm_width(llm), llm_layers(llm))
    model = UserLLM(llm, adapter)
    torch.manual_seed(0)
    states, state_mask = torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.bool)
    with torch.no_grad():
        plain = UserLLM(llm)(ids, mask)
        assert torch.equal(plain, model(ids, mask, states, state_mask))
        for block in adapter.blocks:  # open gates change the outputs: the blocks are in the decoder's path
            block.attention_gate.fill_(1.0)
        assert not torch.allclose(plain, model(ids, mask, states, state_mask))


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("mode", [AdapterConfig(mode="soft", soft_tokens=1), AdapterConfig(mode="soft", soft_tokens=3),
                                  AdapterConfig(mode="words", soft_tokens=2),
                                  AdapterConfig(mode="perceiver", latents=2, adapter_heads=2),
                                  AdapterConfig(mode="xattn", adapter_heads=2)],
                         ids=["soft1", "soft3", "words2", "perceiver", "xattn"])
def test_every_mode_aligns_on_the_real_architecture(world, arch, mode):
    aligned = align(world["data"], world[arch], {"source": "sequence", "path": world["encoder"]}, mode, STEPS,
                    context=128)
    metrics = aligned.metadata["metrics"]
    assert aligned.metadata["data"]["steps"] == 3 and len(metrics["train_loss"]) == 1
    assert metrics["loss_after"] <= metrics["loss_before"]
    if arch == "llama":  # (the tiny Gemma's near-uniform logits move below the 4 decimals recorded)
        assert metrics["loss_after"] < metrics["loss_before"]
    report = evaluate_aligned(aligned, world["data"])
    assert report["accuracy"]["overall"]["total"] == len(report["predictions"]) > 0
    cell = report["intervals"]["overall"]
    assert cell["low"] <= cell["accuracy"] <= cell["high"]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("strategy", ["encoder", "lora"])
def test_strategies_train_and_reload_on_the_real_architecture(world, arch, strategy, tmp_path):
    aligned = align(world["data"], world[arch], {"source": "sequence", "path": world["encoder"]},
                    AdapterConfig(mode="soft"), AlignConfig(strategy=strategy, steps=2, batch_size=8), context=128,
                    out=str(tmp_path / "a"))
    first = evaluate_aligned(aligned, world["data"])["predictions"]
    assert evaluate_aligned(load_aligned(str(tmp_path / "a"), world["data"]), world["data"])["predictions"] == first
    if strategy == "lora":  # all four attention projections carry LoRA weights
        names = {n for n, _ in aligned.model.llm.named_parameters() if "lora_A" in n}
        assert all(any(f"{p}.lora_A" in n for n in names) for p in ("q_proj", "k_proj", "v_proj", "o_proj"))


def test_a_words_prompt_reloads_with_its_vocabulary_rebuilt(world, tmp_path):
    aligned = align(world["data"], world["llama"], {"source": "sequence", "path": world["encoder"]},
                    AdapterConfig(mode="words", soft_tokens=2), STEPS, context=128, out=str(tmp_path / "a"))
    first = evaluate_aligned(aligned, world["data"])["predictions"]
    assert evaluate_aligned(load_aligned(str(tmp_path / "a"), world["data"]), world["data"])["predictions"] == first


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_trained_baselines_get_the_same_step_budget(world, arch, tmp_path):
    runs = {"none": ({"source": "none"}, STEPS), "random": ({"source": "random"}, STEPS),
            "text": ({"source": "text"}, AlignConfig(strategy="lora", steps=3, batch_size=8, learning_rate=5e-3))}
    reports = {}
    for name, (spec, config) in runs.items():
        aligned = align(world["data"], world[arch], spec, AdapterConfig(), config, context=256,
                        out=str(tmp_path / name))
        assert aligned.metadata["data"]["steps"] == 3
        reports[name] = evaluate_aligned(load_aligned(str(tmp_path / name), world["data"]), world["data"])
    # only the text prompt pays for the history in tokens; the others carry one soft token
    assert reports["text"]["prompt_tokens"] > reports["none"]["prompt_tokens"] + 20
    assert reports["none"]["prompt_tokens"] == reports["random"]["prompt_tokens"]
    assert not (tmp_path / "text" / "adapter.pt").exists() and (tmp_path / "text" / "lora").is_dir()


def test_steps_cycle_over_the_questions_past_one_pass(world):
    aligned = align(world["data"], world["llama"], {"source": "none"}, AdapterConfig(),
                    AlignConfig(steps=40, batch_size=32, learning_rate=5e-3), context=128)
    passes = aligned.metadata["metrics"]["train_loss"]
    per_pass = -(-aligned.metadata["data"]["train_questions"] // 32)
    assert aligned.metadata["data"]["steps"] == 40 and len(passes) == -(-40 // per_pass)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_option_likelihoods_equal_each_option_scored_alone(world, arch):
    """Batched, left-padded scoring gives each option's summed token log-probabilities after its prompt."""
    tokenizer, llm = load_llm(world[arch])
    builder = PromptBuilder(tokenizer, world["data"].items, 128)
    questions = world["data"].questions[:3]
    prompts = [builder.prompt(q, None, options=False) for q in questions]
    with torch.no_grad():
        batched = option_log_likelihoods(UserLLM(llm), builder, questions, prompts)
        for question, prompt, row in zip(questions, prompts, batched):
            for letter, value in zip(LETTERS, row):
                option = builder.option(question, letter)
                ids = torch.tensor([prompt + option])
                log_probs = torch.log_softmax(llm(input_ids=ids).logits[0].float(), -1)
                alone = sum(log_probs[len(prompt) - 1 + i, t].item() for i, t in enumerate(option))
                assert value.item() == pytest.approx(alone, abs=1e-3)
    assert len({tuple(r.tolist()) for r in batched}) == 3  # the questions differ, so do their scores


def _full_sequence_scores(model, builder, questions, prompts, states, state_mask):
    """The four options scored the plain way: four whole sequences (prompt + option) per question."""
    options = [builder.option(q, letter) for q in questions for letter in LETTERS]
    ids, mask, labels = lm_batch([p for p in prompts for _ in LETTERS], options, builder.tokenizer.pad_token_id)
    repeat = {"states": None, "state_mask": None} if states is None else \
        {"states": states.repeat_interleave(4, 0), "state_mask": state_mask.repeat_interleave(4, 0)}
    keep = max(map(len, options)) + 1
    log_probs = torch.log_softmax(model(ids, mask, keep=keep, **repeat)[:, :-1].float(), -1)
    targets = labels[:, -keep:][:, 1:]
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (targets != -100)).sum(-1).view(len(questions), 4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("mode", ["none", "soft", "words", "perceiver", "xattn"])
def test_a_shared_prompt_scores_and_trains_as_four_full_sequences(world, arch, mode):
    """Each prompt runs once and its keys and values serve its four options: the scores and the
    gradients equal those of four whole sequences, with LoRA on, open cross-attention gates, prompts
    of different lengths (left padding) and longer than the Gemma model's sliding window (64)."""
    tokenizer, llm = load_llm(world[arch])
    torch.manual_seed(0)
    llm = _lora(llm, 4)
    for name, parameter in llm.named_parameters():
        if "lora_B" in name:  # LoRA starts as the identity: make it change the model
            parameter.data.normal_(0, 0.3)
    adapter = None if mode == "none" else build_adapter(AdapterConfig(mode=mode, soft_tokens=2), 16, llm_width(llm),
                                                        llm_layers(llm), llm, tokenizer)
    for name, parameter in (adapter.named_parameters() if adapter is not None else ()):
        if name.endswith("_gate"):
            parameter.data.fill_(0.7)
    model = UserLLM(llm, adapter)
    data = world["data"]
    builder = PromptBuilder(tokenizer, data.items, 256)
    questions = data.questions[:3]
    prompts = [builder.prompt(q, data.histories[q["user_id"]][-k:], options=False)
               for q, k in zip(questions, (2, 9, 30))]
    assert max(map(len, prompts)) > 64 and len(set(map(len, prompts))) == 3
    states, state_mask = (None, None) if adapter is None else (torch.randn(3, 5, 16), torch.rand(3, 5) > 0.3)
    if state_mask is not None:
        state_mask[:, 0] = True
    trainable = [p for p in model.parameters() if p.requires_grad]
    gradients = []
    for score in (option_log_likelihoods, _full_sequence_scores):
        model.zero_grad()
        scores = score(model, builder, questions, prompts, states, state_mask)
        (scores * torch.arange(1.0, 13.0).view(3, 4)).sum().backward()
        gradients.append((scores.detach(), [p.grad.clone() for p in trainable]))
    (shared, shared_grads), (full, full_grads) = gradients
    assert torch.allclose(shared, full, atol=1e-4), (shared - full).abs().max()
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-3) for a, b in zip(shared_grads, full_grads))
    assert any(g.abs().sum() > 0 for g in shared_grads)


def test_the_calibration_reference_is_the_llm_without_lora(world):
    tokenizer, llm = load_llm(world["llama"])
    builder = PromptBuilder(tokenizer, world["data"].items, 128)
    questions = world["data"].questions[:2]
    prompts = [builder.prompt(q, None, options=False) for q in questions]
    with torch.no_grad():
        frozen = option_log_likelihoods(UserLLM(llm), builder, questions, prompts)
        model = UserLLM(_lora(llm, 4))
        for name, parameter in model.llm.named_parameters():
            if "lora_B" in name:  # LoRA starts as the identity: make it change the model
                parameter.normal_(0, 0.5)
        scorer = OptionScorer("option-pmi", builder)
        assert torch.allclose(scorer.reference(model, questions), frozen, atol=1e-4)
        raw = option_log_likelihoods(model, builder, questions, prompts)
        assert not torch.allclose(raw, frozen, atol=1e-2)
        assert torch.allclose(scorer.scores(model, questions, prompts), raw - frozen, atol=1e-4)


def test_option_training_fits_a_batch(world):
    """The option loss reaches the adapter: a soft prompt fitted on one batch of questions lowers it
    at every step."""
    tokenizer, llm = load_llm(world["llama"])
    builder = PromptBuilder(tokenizer, world["data"].items, 128)
    questions = world["data"].questions[:8]
    prompts = [builder.prompt(q, None, options=False) for q in questions]
    torch.manual_seed(0)
    model = UserLLM(llm, build_adapter(AdapterConfig(mode="soft"), 16, llm_width(llm), llm_layers(llm)))
    states, state_mask = torch.randn(8, 1, 16), torch.ones(8, 1, dtype=torch.bool)
    scorer = OptionScorer("option-pmi", builder)
    optimiser = torch.optim.AdamW(model.adapter.parameters(), lr=0.1)
    losses = []
    for _ in range(15):
        loss = scorer.loss(scorer.scores(model, questions, prompts, states, state_mask), questions)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    # (a tiny random decoder barely reacts to one soft token, so the fall is small but steady)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.01
    assert not any(p.requires_grad for p in llm.parameters())


def test_answer_modes_all_answer_with_a_letter(world):
    data = world["data"]
    letters = {}
    for answer in ("letter", "option", "option-pmi"):
        aligned = align(data, world["llama"], {"source": "sequence", "path": world["encoder"]}, AdapterConfig(),
                        AlignConfig(steps=1, batch_size=8, answer=answer), context=128)
        report = evaluate_aligned(aligned, data)
        assert report["run"]["answer"] == answer
        letters[answer] = report["predictions"]
    assert all(p in LETTERS for answer in ("option", "option-pmi") for p in letters[answer].values())
    assert letters["option"] != letters["option-pmi"]  # the calibration changes answers
    # the untrained no-history LLM is its own reference: calibrated against itself it would tie everywhere
    baseline = evaluate_baseline("none", data, world["llama"], context=128, answer="option-pmi")
    assert baseline["run"]["answer"] == "option"
    with pytest.raises(ValueError, match="answer mode"):
        AlignConfig(answer="first")


def test_text_source_needs_lora(world):
    with pytest.raises(ValueError, match="--strategy lora"):
        align(world["data"], world["llama"], {"source": "text"}, AdapterConfig(), STEPS)


REAL = "smollm2-135m-instruct"


@pytest.mark.skipif(importlib.util.find_spec(llms.REGISTRY[REAL].module) is None,
                    reason=f"{REAL} is not installed ({llms.REGISTRY[REAL].install})")
def test_the_packaged_llm_is_the_default_and_aligns(tmp_path):
    """The real SmolLM2-135M-Instruct, by default (no --llm): gates at zero leave it unchanged, and
    two steps of a one-token soft prompt run through the CLI on a 4-user question set."""
    torch.set_num_threads(1)
    paths = _question_set(tmp_path, 4)
    data = load_question_data(paths["questions"], paths["items"])
    tokenizer, llm = load_llm(None)
    assert type(llm).__name__ == "LlamaForCausalLM" and llm_width(llm) == 576
    builder = PromptBuilder(tokenizer, data.items, 128)
    ids, mask = left_pad([builder.prompt(q, None) for q in data.questions[:2]], tokenizer.pad_token_id)
    adapter = build_adapter(AdapterConfig(mode="xattn", xattn_every=10), 8, 576, llm_layers(llm))
    with torch.no_grad():
        plain = UserLLM(llm)(ids, mask, keep=1)
        gated = UserLLM(llm, adapter)(ids, mask, torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool), keep=1)
    assert torch.equal(plain, gated)
    # calibrated option scores: the gated model is still the frozen one, so every option scores 0
    chunk = data.questions[:2]
    with torch.no_grad():
        calibrated = OptionScorer("option-pmi", builder).scores(
            UserLLM(llm, adapter), chunk, [builder.prompt(q, None, options=False) for q in chunk],
            torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool))
    assert calibrated.shape == (2, 4) and calibrated.abs().max() < 1e-4
    printed = text_io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["uqabench", "align", "--questions", paths["questions"], "--items", paths["items"],
                         "--no_history", "--steps", "2", "--batch_size", "4", "--eval_share", "0.5",
                         "--out", str(tmp_path / "a")]) == 0
    summary = json.loads(printed.getvalue())
    # a few questions of four users: two steps move the loss, not necessarily down (the falling loss of
    # option training is tested on the tiny architectures)
    assert summary["steps"] == 2 and math.isfinite(summary["loss_after"])
    assert summary["loss_after"] != summary["loss_before"]
    saved = json.loads((tmp_path / "a" / "uqa_alignment.json").read_text())
    assert saved["llm"] == REAL and saved["config"]["answer"] == "option-pmi"
