"""Tune a namer from (titles -> name) pairs: PEFT prompt tuning, LoRA, or full fine-tuning.

One small, deterministic training loop for all three (seeded shuffling and initialisation, no
dropout randomness at evaluation): the base model stays frozen for prompt tuning and LoRA, so only
the virtual tokens or the low-rank updates are saved. The output folder is what ``--adapter`` takes:
the PEFT adapter (or the whole model, for full fine-tuning), the tokenizer, and
``journeys_adapter.json`` with the base model, prompt template, training-data hash and metrics.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from journeys import llms
from journeys.naming.generation import ADAPTER_METADATA, Generator, load_base
from journeys.naming.prompting import fields_for, sanitise, template_from_id
from journeys.naming.validation import clean
from prompts import TUNED
from tuning.pairs import Pair, pairs_hash

log = logging.getLogger(__name__)

METHODS = ("prompt", "lora", "full")
STRATEGY_OF = {"prompt": "prompt-tuned", "lora": "fine-tuned", "full": "fine-tuned"}
# Prompt tuning moves a few embeddings a long way; full fine-tuning moves every weight a little.
DEFAULT_LEARNING_RATE = {"prompt": 3e-2, "lora": 1e-3, "full": 5e-5}
# LoRA on the packaged SmolLM2 with the 719 pairs of `journeys tune pairs --sample --movielens`: 200
# steps beat 80 against the keyword namer on both reference sets (docs/evaluation.md, "Measured"); the other
# methods were not measured at 200 and keep 60.
DEFAULT_STEPS = {"prompt": 60, "lora": 200, "full": 60}
INIT_TEXT = "Give a short name for the interest these items share"
# LoRA on every attention projection: the query and value projections alone (PEFT's default for
# Llama-style models) learned the naming format more slowly here.
ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class TuneConfig:
    method: str = field(default="lora", metadata={"help": "prompt | lora | full"})
    base: str | None = field(default=None, metadata={
        "help": f"registered LLM ({', '.join(llms.REGISTRY)}), .gguf file, folder or hub id "
                f"(default: {llms.DEFAULT_LLM})"})
    # Small steps: about 3-6 s each for the packaged models on one or two CPU threads.
    steps: int | None = field(default=None, metadata={
        "help": "optimiser steps (default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")"})
    batch_size: int = field(default=8, metadata={"help": "pairs per step"})
    learning_rate: float | None = field(default=None, metadata={"help": "default depends on the method"})
    virtual_tokens: int = field(default=20, metadata={"help": "prompt tuning: learned prompt length"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA: rank of the updates"})
    # Every measured adapter was trained on 5 titles; the namer then shows the adapter's number.
    max_titles: int = field(default=5, metadata={"help": "titles per prompt, as the namer uses"})
    max_keywords: int = field(default=6, metadata={"help": "keywords per prompt, as the namer uses"})
    validation_share: float = field(default=0.1, metadata={"help": "pairs held out to measure the result"})
    seed: int = field(default=0, metadata={"help": "seeds shuffling and initialisation"})
    template: str = field(default=TUNED, metadata={"help": "prompt template id"})

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown tuning method '{self.method}': choose one of {', '.join(METHODS)}")
        if self.steps is None:
            object.__setattr__(self, "steps", DEFAULT_STEPS[self.method])
        if min(self.steps, self.batch_size, self.virtual_tokens, self.lora_rank, self.max_titles) < 1:
            raise ValueError("steps, batch_size, virtual_tokens, lora_rank and max_titles must be positive")
        if not 0 <= self.validation_share < 0.5:
            raise ValueError("validation_share must be in [0, 0.5)")

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATE[self.method]


def prompt_for(pair: Pair, config: TuneConfig) -> str:
    """The same prompt the namer builds at naming time, from a pair instead of a journey."""
    titles = [t for t in (sanitise(t) for t in pair.titles) if t][:config.max_titles]
    keywords = [k for k in (sanitise(k, 40) for k in pair.keywords) if k][:config.max_keywords]
    return template_from_id(config.template).render(**fields_for(titles, keywords))


def split(pairs: list[Pair], share: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held = int(len(pairs) * share) if len(pairs) >= 10 else 0
    return [pairs[i] for i in order[held:]], [pairs[i] for i in order[:held]]


def _wrap(model, config: TuneConfig, location: str):
    """The trainable model: PEFT prompt tuning or LoRA around the frozen base, or the base itself."""
    if config.method == "full":
        return model
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if config.method == "prompt":
        peft_config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.virtual_tokens,
                                         prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=INIT_TEXT,
                                         tokenizer_name_or_path=location)
    else:
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        # Other architectures name their projections differently: PEFT knows the common ones.
        targets = ATTENTION_PROJECTIONS if set(ATTENTION_PROJECTIONS) <= names else None
        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                 lora_dropout=0.0, target_modules=targets)
    return get_peft_model(model, peft_config)


def _batch(tokenizer, pairs: list[Pair], config: TuneConfig):
    """Tokenised inputs and labels; the loss covers only the name and its end-of-sequence token."""
    import torch

    prompts = [prompt_for(p, config) for p in pairs]
    targets = [tokenizer.encode(" " + p.name, add_special_tokens=False) + [tokenizer.eos_token_id] for p in pairs]
    prompt_ids = [tokenizer.encode(p, truncation=True, max_length=512 - len(t)) for p, t in zip(prompts, targets)]
    sequences = [p + t for p, t in zip(prompt_ids, targets)]
    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for row, (prompt, sequence) in enumerate(zip(prompt_ids, sequences)):
        input_ids[row, :len(sequence)] = torch.tensor(sequence)
        attention[row, :len(sequence)] = 1
        labels[row, len(prompt):len(sequence)] = torch.tensor(sequence[len(prompt):])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _mean_loss(model, tokenizer, pairs: list[Pair], config: TuneConfig) -> float | None:
    import torch

    if not pairs:
        return None
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(pairs), config.batch_size):
            chunk = pairs[start:start + config.batch_size]
            total += float(model(**_batch(tokenizer, chunk, config)).loss) * len(chunk)
    return round(total / len(pairs), 4)


def _exact_match(generator: Generator, pairs: list[Pair], config: TuneConfig) -> float | None:
    if not pairs:
        return None
    answers = generator.generate([prompt_for(p, config) for p in pairs], config.batch_size, 12)
    hits = sum(clean(a).casefold() == p.name.casefold() for a, p in zip(answers, pairs))
    return round(hits / len(pairs), 4)


@dataclass
class TuneResult:
    metadata: dict
    generator: Generator  # the trained model in memory, as the saved folder reloads it
    training_seconds: float = 0.0  # the optimiser steps only; kept out of the metadata, which reruns reproduce


def train(pairs: list[Pair], config: TuneConfig, out: str, torch_threads: int | None = None) -> TuneResult:
    """Train, save to ``out`` (replacing it only once everything is written) and return the result."""
    import time

    import torch

    if not pairs:
        raise ValueError("no training pairs")
    llms.check_available(config.base)
    location = llms.resolve_model(config.base)
    model, tokenizer = load_base(config.base, torch_threads)
    torch.manual_seed(config.seed)
    model = _wrap(model, config, location)
    train_pairs, validation = split(pairs, config.validation_share, config.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    before = _mean_loss(model, tokenizer, validation, config)
    virtual = config.virtual_tokens if config.method == "prompt" else 0
    generator = Generator(model, tokenizer, llms.model_identity(config.base), virtual_tokens=virtual)
    model.eval()
    exact_before = _exact_match(generator, validation, config)
    started = time.perf_counter()
    order_rng = random.Random(config.seed)
    order: list[int] = []
    losses = []
    for step in range(config.steps):
        if len(order) < config.batch_size:
            epoch = list(range(len(train_pairs)))
            order_rng.shuffle(epoch)
            order += epoch
        chunk = [train_pairs[i] for i in order[:config.batch_size]]
        del order[:config.batch_size]
        model.train()
        loss = model(**_batch(tokenizer, chunk, config)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimiser.step()
        optimiser.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            log.info("step %d/%d: loss %.4f", step + 1, config.steps, losses[-1])
    training_seconds = time.perf_counter() - started
    model.eval()
    window = max(1, min(10, len(losses) // 4))
    metrics = {
        "train_loss_first": round(sum(losses[:window]) / window, 4),
        "train_loss_last": round(sum(losses[-window:]) / window, 4),
        "validation_loss_before": before,
        "validation_loss_after": _mean_loss(model, tokenizer, validation, config),
        "validation_exact_match_before": exact_before,
        "validation_exact_match": _exact_match(generator, validation, config),
        "trainable_parameters": sum(p.numel() for p in trainable),
    }
    metadata = {
        "format_version": 1, "method": config.method, "strategy": STRATEGY_OF[config.method],
        "base_model": llms.model_identity(config.base), "template": config.template,
        "virtual_tokens": virtual, "train_sha256": pairs_hash(pairs), "pairs": len(pairs),
        "train_pairs": len(train_pairs), "validation_pairs": len(validation),
        "sources": dict(sorted(_sources(pairs).items())), "config": asdict(config), "metrics": metrics,
    }
    _save(model, tokenizer, metadata, Path(out))
    generator.metadata, generator.adapter_identity = metadata, out.rstrip("/")
    return TuneResult(metadata, generator, round(training_seconds, 1))


def _sources(pairs: list[Pair]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pair in pairs:
        counts[pair.source] = counts.get(pair.source, 0) + 1
    return counts


def _save(model, tokenizer, metadata: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / ADAPTER_METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
