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

from journeys.naming import base_model
from journeys.naming.generation import ADAPTER_METADATA, Generator, load_base
from journeys.naming.prompting import fields_for, sanitise, template_from_id
from journeys.naming.validation import clean
from tuning.pairs import Pair, pairs_hash

log = logging.getLogger(__name__)

METHODS = ("prompt", "lora", "full")
STRATEGY_OF = {"prompt": "prompt-tuned", "lora": "fine-tuned", "full": "fine-tuned"}
# Prompt tuning moves a few embeddings a long way; full fine-tuning moves every weight a little.
DEFAULT_LEARNING_RATE = {"prompt": 3e-2, "lora": 1e-3, "full": 5e-5}
INIT_TEXT = "Give a short name for the interest these items share"
# A decoder warm-started from an encoder checkpoint (the built-in base) gets its cross-attention and
# the transform of its language-model head freshly initialised: low-rank updates to random weights
# learn little, so LoRA trains these few modules in full and saves them with the adapter.
NEWLY_INITIALISED = ["crossattention", "transform"]


@dataclass(frozen=True)
class TuneConfig:
    method: str = field(default="lora", metadata={"help": "prompt | lora | full"})
    base: str | None = field(default=None, metadata={"help": "base model id or path (default: built-in)"})
    steps: int = field(default=300, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=16, metadata={"help": "pairs per step"})
    learning_rate: float | None = field(default=None, metadata={"help": "default depends on the method"})
    virtual_tokens: int = field(default=20, metadata={"help": "prompt tuning: learned prompt length"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA: rank of the updates"})
    max_titles: int = field(default=10, metadata={"help": "titles per prompt, as the namer uses"})
    max_keywords: int = field(default=6, metadata={"help": "keywords per prompt, as the namer uses"})
    validation_share: float = field(default=0.1, metadata={"help": "pairs held out to measure the result"})
    seed: int = field(default=0, metadata={"help": "seeds shuffling and initialisation"})
    template: str = field(default="tuned/v1", metadata={"help": "prompt template id"})

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown tuning method '{self.method}': choose one of {', '.join(METHODS)}")
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


def _wrap(model, config: TuneConfig, seq2seq: bool, location: str):
    """The trainable model: PEFT prompt tuning or LoRA around the frozen base, or the base itself."""
    if config.method == "full":
        return model
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    task = TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM
    if config.method == "prompt":
        # PEFT reads the sizes from the model config; an encoder-decoder keeps them in its encoder's.
        sizes = getattr(model.config, "encoder", model.config)
        peft_config = PromptTuningConfig(task_type=task, num_virtual_tokens=config.virtual_tokens,
                                         prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=INIT_TEXT,
                                         tokenizer_name_or_path=location, token_dim=sizes.hidden_size,
                                         num_layers=sizes.num_hidden_layers,
                                         num_attention_heads=sizes.num_attention_heads)
    else:
        # PEFT knows the attention layers of common architectures; BERT-style ones (the built-in base)
        # are named query/key/value, which covers the decoder's cross-attention too.
        bert_like = model.config.model_type in ("encoder-decoder", "bert")
        peft_config = LoraConfig(task_type=task, r=config.lora_rank, lora_alpha=2 * config.lora_rank,
                                 lora_dropout=0.0, target_modules=["query", "key", "value"] if bert_like else None,
                                 modules_to_save=NEWLY_INITIALISED if model.config.model_type == "encoder-decoder"
                                 else None)
    return get_peft_model(model, peft_config)


def _batch(tokenizer, pairs: list[Pair], config: TuneConfig, seq2seq: bool):
    """Tokenised inputs and labels; the loss covers only the name and its end-of-sequence token."""
    import torch

    prompts = [prompt_for(p, config) for p in pairs]
    targets = [tokenizer.encode(" " + p.name, add_special_tokens=False) + [tokenizer.eos_token_id] for p in pairs]
    if seq2seq:
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=512)
        width = max(len(t) for t in targets)
        labels = torch.full((len(pairs), width), -100, dtype=torch.long)
        for row, target in enumerate(targets):
            labels[row, :len(target)] = torch.tensor(target)
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"], "labels": labels}
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


def _mean_loss(model, tokenizer, pairs: list[Pair], config: TuneConfig, seq2seq: bool) -> float | None:
    import torch

    if not pairs:
        return None
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(pairs), config.batch_size):
            chunk = pairs[start:start + config.batch_size]
            total += float(model(**_batch(tokenizer, chunk, config, seq2seq)).loss) * len(chunk)
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


def train(pairs: list[Pair], config: TuneConfig, out: str) -> TuneResult:
    """Train, save to ``out`` (replacing it only once everything is written) and return the result."""
    import torch

    if not pairs:
        raise ValueError("no training pairs")
    torch.manual_seed(config.seed)
    location = base_model.resolve(config.base)
    model, tokenizer, seq2seq = load_base(config.base)
    model = _wrap(model, config, seq2seq, location)
    train_pairs, validation = split(pairs, config.validation_share, config.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    before = _mean_loss(model, tokenizer, validation, config, seq2seq)
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
        loss = model(**_batch(tokenizer, chunk, config, seq2seq)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimiser.step()
        optimiser.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            log.info("step %d/%d: loss %.4f", step + 1, config.steps, losses[-1])
    model.eval()
    window = max(1, min(10, len(losses) // 4))
    virtual = config.virtual_tokens if config.method == "prompt" else 0
    generator = Generator(model, tokenizer, seq2seq, base_model.model_identity(config.base), virtual_tokens=virtual)
    metrics = {
        "train_loss_first": round(sum(losses[:window]) / window, 4),
        "train_loss_last": round(sum(losses[-window:]) / window, 4),
        "validation_loss_before": before,
        "validation_loss_after": _mean_loss(model, tokenizer, validation, config, seq2seq),
        "validation_exact_match": _exact_match(generator, validation, config),
        "trainable_parameters": sum(p.numel() for p in trainable),
    }
    metadata = {
        "format_version": 1, "method": config.method, "strategy": STRATEGY_OF[config.method],
        "base_model": base_model.model_identity(config.base), "template": config.template,
        "virtual_tokens": virtual, "train_sha256": pairs_hash(pairs), "pairs": len(pairs),
        "train_pairs": len(train_pairs), "validation_pairs": len(validation),
        "sources": dict(sorted(_sources(pairs).items())), "config": asdict(config), "metrics": metrics,
    }
    _save(model, tokenizer, metadata, Path(out))
    generator.metadata, generator.adapter_identity = metadata, out.rstrip("/")
    return TuneResult(metadata, generator)


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
