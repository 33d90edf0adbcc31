"""UQABench alignment and evaluation: user states -> adapter -> frozen LLM -> a letter.

**Sources** of user states (``UserSource``):

- ``embeddings``: one vector per user from ``journeys encode`` (``EMB/embeddings``, e.g. the
  journey encoder), read as a one-step sequence;
- ``sequence``: a sequence encoder from ``journeys uqabench pretrain`` over the user's last
  ``max_len`` history interactions (the question set's ``history.parquet``), all per-step states;
- ``random``: a fixed random vector per user (seeded by the user id), the sanity baseline: it can
  learn the answer priors, as the no-history baseline does, and nothing about the user;
- ``none``: the same zero vector for every user, the trained no-history baseline: the same
  alignment with no user information (a soft prompt that learns the answer priors);
- ``text``: no adapter; the history is written out in the prompt, cut to the ``context`` token
  budget, and LoRA trains (the trained text-prompt baseline, at the same step budget).

**Alignment** (``align``) trains on the training users' questions only (the user split of the LLM),
with their practice questions when the question set has them (``--practice``):
the prompt is the question with no history text, the user arrives through the adapter, and the
loss is on the answer (``AlignConfig.answer``, ``tuning.uqa_answers``: the letter's token, or the
cross-entropy over the four options' likelihoods, by default calibrated by the frozen LLM's).
Strategies: ``adapter`` (only the adapter trains; default, as in
UQABench), ``encoder`` (the sequence encoder trains too), ``lora`` (LoRA on the LLM's attention,
plus the adapter). The base LLM's weights never change.

**Evaluation** (``evaluate``) answers the evaluation users' questions in the same answer mode (a
generated letter, or the letter of the best-scoring option) and scores with
UQABench's rule (``journeys.uqa_scoring``): accuracy per sub-task, per dimension and overall. The
untrained (zero-shot) baselines run the same LLM with no adapter: ``none`` (question only) and
``text`` (the history written out, truncated to the context). ``AlignConfig.steps`` fixes the
number of optimiser steps, so every row of a comparison trains for the same budget.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from journeys.uqa_scoring import accuracy, intervals
from tuning.uqa_adapters import AdapterConfig, UserLLM, build_adapter, llm_layers, llm_width
from tuning.uqa_answers import ANSWERS, DEFAULT_ANSWER, OptionScorer, check_answer, chosen_letters
from tuning.uqa_llm import (
    PromptBuilder,
    QuestionData,
    SplitConfig,
    answer_loss,
    left_pad,
    llm_name,
    llm_split,
    lm_batch,
    load_llm,
    split_users,
)

SOURCES = ("embeddings", "sequence", "random", "none", "text")
STRATEGIES = ("adapter", "encoder", "lora")
ALIGN_FILE = "uqa_alignment.json"
ADAPTER_FILE = "adapter.pt"
BASELINES = ("none", "text")
OPTION_QUESTIONS_PER_PASS = 8  # option modes: questions per forward pass in training (a prompt and four options each)


@dataclass(frozen=True)
class AlignConfig:
    strategy: str = field(default="adapter", metadata={"help": f"what trains: {', '.join(STRATEGIES)}"})
    lora_rank: int = field(default=8, metadata={"help": "lora: rank"})
    epochs: int = field(default=5, metadata={"help": "passes over the training users' questions (unless --steps)"})
    steps: int = field(default=0, metadata={
        "help": "optimiser steps, cycling over the training questions (0: --epochs passes); give every row of a "
                "comparison the same budget"})
    batch_size: int = field(default=32, metadata={"help": "questions per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW learning rate"})
    random_dim: int = field(default=64, metadata={"help": "random source: width of the random embeddings"})
    loss_questions: int = field(default=256, metadata={
        "help": "the loss before and after alignment is measured on the first N training questions"})
    answer: str = field(default=DEFAULT_ANSWER, metadata={
        "help": f"how the LLM answers: {', '.join(ANSWERS)} (letter: UQABench's generated letter; option: the "
                "option text it finds most likely; option-pmi: the same, less the frozen LLM's likelihood of it "
                "without the user)"})
    max_new_tokens: int = field(default=1, metadata={"help": "letter answers: new tokens (the answer is one letter)"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed and data, same adapter"})

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy '{self.strategy}': choose one of {', '.join(STRATEGIES)}")
        if min(self.lora_rank, self.epochs, self.batch_size, self.random_dim, self.max_new_tokens) < 1:
            raise ValueError("lora_rank, epochs, batch_size, random_dim and max_new_tokens must be >= 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if self.loss_questions < 1:
            raise ValueError("loss_questions must be >= 1")
        if self.steps < 0:
            raise ValueError("steps cannot be negative")
        check_answer(self.answer)


# ---- user sources -----------------------------------------------------------------------------------

class UserSource(nn.Module):
    """Users -> (states [B, L, D], mask [B, L]). ``spec`` says how to rebuild it from disk."""

    width: int
    spec: dict

    def check_users(self, users) -> None:
        pass


class EmbeddingSource(UserSource):
    def __init__(self, vectors: dict[str, np.ndarray], spec: dict):
        super().__init__()
        widths = {len(v) for v in vectors.values()}
        if len(widths) != 1:
            raise ValueError(f"the user embeddings have mixed widths {sorted(widths)}: one encoder's output only")
        self.vectors, self.spec, self.width = vectors, spec, widths.pop()

    def check_users(self, users) -> None:
        missing = sorted(set(users) - set(self.vectors))
        if missing:
            raise ValueError(f"{len(missing)} question users have no embedding in {self.spec.get('path', 'the table')} "
                             f"(first: {missing[0]}): encode them with `journeys encode --users QUESTIONS`")

    def forward(self, users: list[str]):
        self.check_users(users)
        states = torch.from_numpy(np.stack([self.vectors[u] for u in users]).astype(np.float32)).unsqueeze(1)
        return states, torch.ones(len(users), 1, dtype=torch.bool)


def read_embeddings(path: str) -> EmbeddingSource:
    """``journeys encode`` output (its folder or the embeddings/ dataset): one encoder, one version."""
    from journeys import io

    fs, local = io.url_to_fs(path)
    folder = io.join(path, "embeddings") if fs.isdir(io.join(local, "embeddings")) else path
    table = io.read_table(folder)
    needed = {"user_id", "encoder", "version", "embedding"}
    if not needed <= set(table.column_names):
        raise ValueError(f"'{path}' is not a user_embeddings table (needs {', '.join(sorted(needed))}): "
                         "pass the output of `journeys encode`")
    versions = sorted({f"{e} {v}" for e, v in zip(table["encoder"].to_pylist(), table["version"].to_pylist())})
    if len(versions) != 1:
        raise ValueError(f"'{path}' mixes encoders or versions ({', '.join(versions)}): align one at a time")
    vectors = {u: np.asarray(e, dtype=np.float32)
               for u, e in zip(table["user_id"].to_pylist(), table["embedding"].to_pylist())}
    return EmbeddingSource(vectors, {"source": "embeddings", "path": path, "version": versions[0]})


def random_source(users, width: int, seed: int) -> EmbeddingSource:
    vectors = {}
    for user_id in sorted(set(users)):
        key = int(hashlib.sha256(f"{seed}/{user_id}".encode()).hexdigest()[:16], 16)
        vectors[user_id] = np.random.default_rng(key).standard_normal(width).astype(np.float32)
    return EmbeddingSource(vectors, {"source": "random", "width": width, "seed": seed})


class SequenceSource(UserSource):
    def __init__(self, encoder, histories: dict[str, list[str]], spec: dict, train_encoder: bool = False):
        super().__init__()
        self.encoder, self.spec, self.train_encoder = encoder, spec, train_encoder
        self.width = encoder.config.dim
        index = {item_id: i + 1 for i, item_id in enumerate(encoder.vocabulary.item_ids)}
        unknown = sorted({i for h in histories.values() for i in h} - set(index))
        if unknown:
            raise ValueError(f"{len(unknown)} history items are not in the encoder's catalogue (first: {unknown[0]}): "
                             "pre-train the encoder on the same items")
        self.sequences = {u: [index[i] for i in h[-encoder.config.max_len:]] for u, h in histories.items() if h}
        for parameter in encoder.parameters():
            parameter.requires_grad_(train_encoder)
        encoder.eval()  # no dropout, trained or not: the states are the same at alignment and evaluation

    def check_users(self, users) -> None:
        missing = sorted(set(users) - set(self.sequences))
        if missing:
            raise ValueError(f"{len(missing)} question users have no history for the sequence encoder "
                             f"(first: {missing[0]})")

    def forward(self, users: list[str]):
        self.check_users(users)
        rows = [self.sequences[u] for u in users]
        padded = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, row in enumerate(rows):
            padded[i, :len(row)] = torch.tensor(row)
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            return self.encoder(padded), padded > 0


class TextHistory(UserSource):
    """No states: the user's history goes into the prompt as text (the text-prompt baseline)."""

    width = 0

    def __init__(self, histories: dict[str, list[str]]):
        super().__init__()
        self.histories, self.spec = histories, {"source": "text"}

    def forward(self, users: list[str]):
        return None, None


def make_source(spec: dict, data: QuestionData, train_encoder: bool = False) -> UserSource:
    kind = spec.get("source")
    if kind == "text":
        return TextHistory(data.histories)
    if kind == "none":
        users = {q["user_id"] for q in data.questions} | set(data.histories)
        return EmbeddingSource({u: np.zeros(spec["width"], dtype=np.float32) for u in users}, dict(spec))
    if kind == "embeddings":
        return read_embeddings(spec["path"])
    if kind == "random":
        return random_source(data.histories, spec["width"], spec["seed"])
    if kind == "sequence":
        from tuning.sequence_encoders import load_encoder

        encoder, _ = load_encoder(spec["path"])
        return SequenceSource(encoder, data.histories, spec, train_encoder)
    raise ValueError(f"unknown user source '{kind}': choose one of {', '.join(SOURCES)}")


# ---- alignment --------------------------------------------------------------------------------------

@dataclass
class Aligned:
    tokenizer: object
    model: UserLLM
    source: UserSource
    metadata: dict


def _batches(n: int, size: int, generator=None):
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return [b.tolist() for b in order.split(size)]


def _lora(llm, rank: int):
    from peft import LoraConfig, get_peft_model

    # all four attention projections where the model names them so (Llama, Gemma 3, Qwen2); else
    # PEFT's default for the architecture (GPT-2's c_attn)
    names = {name.rsplit(".", 1)[-1] for name, _ in llm.named_modules()}
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if {"q_proj", "o_proj"} <= names else None
    return get_peft_model(llm, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets))


def prompt_for(builder: PromptBuilder, question: dict, source: UserSource | None, options: bool = True) -> list[int]:
    """The question alone, or with the history written out when the source is the text itself."""
    history = source.histories.get(question["user_id"], []) if isinstance(source, TextHistory) else None
    return builder.prompt(question, history, options=options)


def _loss(model: UserLLM, source: UserSource, builder: PromptBuilder, questions: list[dict],
          scorer: OptionScorer | None = None) -> torch.Tensor:
    """The answer loss: on the letter's tokens, or (with a ``scorer``) the cross-entropy over the
    four options' scores."""
    if scorer is not None:
        states, state_mask = source([q["user_id"] for q in questions])
        prompts = [prompt_for(builder, q, source, options=False) for q in questions]
        return scorer.loss(scorer.scores(model, questions, prompts, states, state_mask), questions)
    answers = [builder.answer(q["answer"]) for q in questions]
    ids, mask, labels = lm_batch([prompt_for(builder, q, source) for q in questions], answers,
                                 builder.tokenizer.pad_token_id)
    states, state_mask = source([q["user_id"] for q in questions])
    keep = max(map(len, answers)) + 1  # the answer's positions and the one before it
    return answer_loss(model(ids, mask, states, state_mask, keep=keep), labels[:, -keep:])


def mean_loss(aligned: Aligned, builder: PromptBuilder, questions: list[dict], batch_size: int = 64,
              limit: int = 256, scorer: OptionScorer | None = None) -> float:
    """Mean answer loss over the first ``limit`` questions (a fixed sample: on a real LLM the whole
    training set would cost as much as the training itself)."""
    questions = questions[:limit]
    if scorer is not None:
        batch_size = max(1, batch_size // 4)  # a prompt and four options a question
    with torch.no_grad():
        losses = [(_loss(aligned.model, aligned.source, builder, [questions[i] for i in b], scorer).item(), len(b))
                  for b in _batches(len(questions), batch_size)]
    return round(sum(x * n for x, n in losses) / max(sum(n for _, n in losses), 1), 4)


def resolve_split(llm: str | None, split: SplitConfig | None) -> SplitConfig:
    """The split the built-in LLM was trained with (a different one would evaluate on its training
    users); any other LLM takes the given split or the default."""
    trained = llm_split(llm)
    if trained and split and split != trained:
        raise ValueError(f"the LLM was trained with {trained}; evaluating with {split} would test it on its "
                         "own training users")
    return trained or split or SplitConfig()


def align(data: QuestionData, llm: str | None, source_spec: dict, adapter_config: AdapterConfig, config: AlignConfig,
          split: SplitConfig | None = None, out: str | None = None, context: int = 256,
          references: dict | None = None) -> Aligned:
    """Train an adapter (and, by strategy, the encoder or LoRA) on the training users' questions.
    ``references``: the frozen LLM's no-user option scores to share across runs on the same LLM and
    question set (``OptionScorer``)."""
    torch.manual_seed(config.seed)
    split = resolve_split(llm, split)
    if source_spec.get("source") == "random":
        source_spec = {"source": "random", "width": config.random_dim, "seed": config.seed}
    if source_spec.get("source") == "none":
        source_spec = {"source": "none", "width": config.random_dim}
    if config.strategy == "encoder" and source_spec.get("source") != "sequence":
        raise ValueError("--strategy encoder trains a sequence encoder: give --encoder (embeddings have no weights)")
    if source_spec.get("source") == "text" and config.strategy != "lora":
        raise ValueError("the text prompt has no adapter to train: use --strategy lora")
    source = make_source(source_spec, data, train_encoder=config.strategy == "encoder")
    train_users, _ = split_users({q["user_id"] for q in data.questions}, split)
    training = set(train_users)
    practice = [q for q in data.practice if q["user_id"] in training]  # never an evaluation user's
    questions = [q for q in data.questions if q["user_id"] in training] + practice
    if not questions:
        raise ValueError("no training users' questions to align on")
    source.check_users({q["user_id"] for q in questions})
    tokenizer, base = load_llm(llm)
    text = isinstance(source, TextHistory)
    adapter = None if text else build_adapter(adapter_config, source.width, llm_width(base), llm_layers(base),
                                              base, tokenizer)
    if config.strategy == "lora":
        base = _lora(base, config.lora_rank)
    model = UserLLM(base, adapter)
    aligned = Aligned(tokenizer, model, source, {})
    builder = PromptBuilder(tokenizer, data.items, context)
    scorer = None if config.answer == "letter" else OptionScorer(config.answer, builder, references)
    adapter_parameters = [] if adapter is None else list(adapter.parameters())
    trainable = [p for p in [*adapter_parameters, *source.parameters(), *base.parameters()] if p.requires_grad]
    trainable = list({id(p): p for p in trainable}.values())
    optimiser = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    before = mean_loss(aligned, builder, questions, limit=config.loss_questions, scorer=scorer)
    losses = []  # mean training loss per pass (per epoch, or per pass over the questions within --steps)
    budget = config.steps or config.epochs * len(_batches(len(questions), config.batch_size))
    done = 0
    while done < budget:
        model.train()
        base.eval()  # no dropout in the frozen LLM; only the adapter's modules are in training mode
        total, steps = 0.0, 0
        for batch in _batches(len(questions), config.batch_size, generator)[:budget - done]:
            optimiser.zero_grad()
            loss = 0.0
            # the option modes run a prompt and four options a question: a batch goes through in parts
            # (gradients summed, so the step is the same) to bound the memory of a long text prompt's
            # activations
            size = len(batch) if scorer is None else OPTION_QUESTIONS_PER_PASS
            for start in range(0, len(batch), size):
                part = [questions[i] for i in batch[start:start + size]]
                part_loss = _loss(model, source, builder, part, scorer) * (len(part) / len(batch))
                part_loss.backward()
                loss += part_loss.item()
            optimiser.step()
            total, steps = total + loss, steps + 1
        done += steps
        losses.append(round(total / steps, 4))
    model.eval()
    aligned.metadata = {
        "llm": llm_name(llm), "source": source.spec, "width": source.width, "adapter": asdict(adapter_config),
        "config": asdict(config), "split": asdict(split), "context": context,
        "data": {"train_users": len(train_users), "train_questions": len(questions),
                 "practice_questions": len(practice),
                 "trainable_parameters": sum(p.numel() for p in trainable), "steps": done},
        "metrics": {"loss_before": before, "train_loss": losses, "loss_after": mean_loss(aligned, builder, questions,
                                                                                       limit=config.loss_questions,
                                                                                       scorer=scorer)},
    }
    if out:
        save(aligned, out)
    return aligned


def save(aligned: Aligned, out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if aligned.model.adapter is not None:
        torch.save(aligned.model.adapter.state_dict(), folder / ADAPTER_FILE)
    if aligned.metadata["config"]["strategy"] == "lora":
        aligned.model.llm.save_pretrained(str(folder / "lora"))
    if aligned.metadata["config"]["strategy"] == "encoder":
        from tuning.sequence_encoders import CONFIG_FILE
        from tuning.sequence_encoders import save as save_encoder

        encoder_metadata = json.loads((Path(aligned.metadata["source"]["path"]) / CONFIG_FILE).read_text())
        encoder_metadata.pop("vocabulary", None)
        save_encoder(aligned.source.encoder, encoder_metadata, str(folder / "encoder"))
    (folder / ALIGN_FILE).write_text(json.dumps(aligned.metadata, indent=2) + "\n")


def load_aligned(folder: str, data: QuestionData) -> Aligned:
    path = Path(folder)
    if not (path / ALIGN_FILE).exists():
        raise FileNotFoundError(f"'{folder}' holds no {ALIGN_FILE}: pass a folder from `journeys uqabench align`")
    metadata = json.loads((path / ALIGN_FILE).read_text())
    spec = dict(metadata["source"])
    if metadata["config"]["strategy"] == "encoder":
        spec["path"] = str(path / "encoder")
    source = make_source(spec, data)
    if source.width != metadata["width"]:
        raise ValueError(f"the user states are {source.width} wide but the adapter was aligned on {metadata['width']}")
    tokenizer, base = load_llm(metadata["llm"])
    adapter = None
    if not isinstance(source, TextHistory):
        adapter = build_adapter(AdapterConfig(**metadata["adapter"]), source.width, llm_width(base), llm_layers(base),
                                base, tokenizer)
        adapter.load_state_dict(torch.load(path / ADAPTER_FILE, map_location="cpu", weights_only=True))
        adapter.eval()
    if metadata["config"]["strategy"] == "lora":
        from peft import PeftModel

        base = PeftModel.from_pretrained(base, str(path / "lora"))
        base.eval()
    return Aligned(tokenizer, UserLLM(base, adapter), source, metadata)


# ---- evaluation -------------------------------------------------------------------------------------

def eval_questions(data: QuestionData, split: SplitConfig) -> list[dict]:
    _, eval_users = split_users({q["user_id"] for q in data.questions}, split)
    chosen = [q for q in data.questions if q["user_id"] in set(eval_users)]
    if not chosen:
        raise ValueError("no evaluation users: raise --eval_share or give more users")
    return chosen


def predict(model: UserLLM, tokenizer, builder: PromptBuilder, questions: list[dict], source: UserSource | None,
            histories: dict[str, list[str]] | None = None, max_new_tokens: int = 1,
            batch_size: int = 32, answer: str = "letter",
            references: dict | None = None) -> tuple[dict[str, str], float]:
    """{question_id: answer} and the mean prompt length in tokens. The answer is the greedy text
    (``letter``) or the best option's letter (``option``, ``option-pmi``: ``tuning.uqa_answers``).
    With a source the user comes through the adapter; with ``histories`` as text; with neither, not at all."""
    scorer = None if answer == "letter" else OptionScorer(answer, builder, references)
    if scorer is not None:
        batch_size = max(1, batch_size // 4)  # a prompt and four options a question
    predictions, tokens = {}, 0
    model.eval()
    for batch in _batches(len(questions), batch_size):
        chunk = [questions[i] for i in batch]
        if histories is not None:
            prompts = [builder.prompt(q, histories.get(q["user_id"], []), options=scorer is None) for q in chunk]
        else:
            prompts = [prompt_for(builder, q, source, options=scorer is None) for q in chunk]
        tokens += sum(map(len, prompts))
        states = state_mask = None
        if source is not None and not isinstance(source, TextHistory):
            with torch.no_grad():
                states, state_mask = source([q["user_id"] for q in chunk])
        if scorer is not None:
            with torch.no_grad():
                letters = chosen_letters(scorer.scores(model, chunk, prompts, states, state_mask))
            predictions.update((q["question_id"], letter) for q, letter in zip(chunk, letters))
            continue
        ids, mask = left_pad(prompts, tokenizer.pad_token_id)
        generated = model.greedy(ids, mask, states, state_mask, max_new_tokens, tokenizer.eos_token_id)
        for question, new in zip(chunk, generated):
            predictions[question["question_id"]] = tokenizer.decode(new, skip_special_tokens=True)
    return predictions, tokens / max(len(questions), 1)


def prefix_tokens(aligned: Aligned) -> int:
    return getattr(aligned.model.adapter, "prefix_length", 0)  # no adapter (text prompt): none


def evaluate_aligned(aligned: Aligned, data: QuestionData, references: dict | None = None) -> dict:
    split = SplitConfig(**aligned.metadata["split"])
    questions = eval_questions(data, split)
    builder = PromptBuilder(aligned.tokenizer, data.items, aligned.metadata["context"])
    answer = aligned.metadata["config"].get("answer", "letter")  # adapters aligned before answer modes: letters
    predictions, tokens = predict(aligned.model, aligned.tokenizer, builder, questions, aligned.source,
                                  max_new_tokens=aligned.metadata["config"]["max_new_tokens"], answer=answer,
                                  references=references)
    return {"run": {"kind": "aligned", "source": aligned.source.spec, "adapter": aligned.metadata["adapter"],
                    "strategy": aligned.metadata["config"]["strategy"], "llm": aligned.metadata["llm"],
                    "answer": answer, "split": asdict(split)},
            "prompt_tokens": round(tokens + prefix_tokens(aligned), 1),
            "accuracy": accuracy(questions, predictions), "intervals": intervals(questions, predictions),
            "predictions": predictions}


def evaluate_baseline(baseline: str, data: QuestionData, llm: str | None = None, split: SplitConfig | None = None,
                      context: int | None = None, max_new_tokens: int = 1, answer: str = DEFAULT_ANSWER,
                      references: dict | None = None) -> dict:
    """The untrained LLM with no history (``none``) or the history written out (``text``)."""
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline '{baseline}': choose one of {', '.join(BASELINES)}")
    check_answer(answer)
    if baseline == "none" and answer == "option-pmi":
        answer = "option"  # its no-user reference is itself: every option would score 0
    split = resolve_split(llm, split)
    if context is None:
        trained = Path(llm) / "uqa_llm.json" if llm else None
        context = json.loads(trained.read_text())["config"]["context"] if trained and trained.exists() else 256
    tokenizer, base = load_llm(llm)
    questions = eval_questions(data, split)
    builder = PromptBuilder(tokenizer, data.items, context)
    predictions, tokens = predict(UserLLM(base), tokenizer, builder, questions, None,
                                  data.histories if baseline == "text" else None, max_new_tokens, answer=answer,
                                  references=references)
    return {"run": {"kind": "baseline", "baseline": baseline, "llm": llm_name(llm), "context": context,
                    "answer": answer, "split": asdict(split)},
            "prompt_tokens": round(tokens, 1), "accuracy": accuracy(questions, predictions),
            "intervals": intervals(questions, predictions), "predictions": predictions}
