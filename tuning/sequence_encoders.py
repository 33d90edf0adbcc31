"""Sequence user encoders (SASRec-, GRU4Rec- and LLaMA-style), pre-trained on next-item prediction.

As in UQABench's pre-training step, every step of a user's sequence fuses the item id with the
item's side information: the mean of its tag embeddings and the mean of its title-token embeddings,
concatenated with the id embedding and projected (``ItemFeatures``). The same fused vectors of the
whole catalogue are the output layer, so the objective is a **full softmax over the catalogue**
(no sampled negatives) at every position of the sequence.

Backbones, all causal (a step sees only itself and earlier steps; sequences are right-padded, so
padding is never attended to):

- ``sasrec``: learned positions + pre-norm Transformer encoder layers with a causal mask.
- ``gru4rec``: a GRU.
- ``llama``: RMSNorm, rotary position embeddings (RoPE) in causal self-attention, SwiGLU MLP.

Protocol (``pretrain``): the history/held-out cut of the question set (``cut_history``, same
``holdout``) so the encoder never trains on a held-out interaction; each user's last ``max_len``
history steps are a training sequence (predict every next step); the test is the first held-out
item given the history, ranked against the whole catalogue: Recall@10 and NDCG@10, beside a
most-popular baseline. The saved folder holds the weights, the vocabularies and
``sequence_encoder.json`` (configuration, data hash, metrics); ``load_encoder`` restores it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from journeys.model import Event, Item

KINDS = ("sasrec", "gru4rec", "llama")
CONFIG_FILE = "sequence_encoder.json"
WEIGHTS_FILE = "sequence_encoder.pt"


@dataclass(frozen=True)
class SequenceEncoderConfig:
    kind: str = field(default="sasrec", metadata={"help": f"backbone: {', '.join(KINDS)}"})
    dim: int = field(default=64, metadata={"help": "hidden width"})
    layers: int = field(default=2, metadata={"help": "Transformer blocks or GRU layers"})
    heads: int = field(default=2, metadata={"help": "attention heads (Transformers)"})
    max_len: int = field(default=50, metadata={"help": "last N history interactions the encoder reads"})
    dropout: float = field(default=0.1, metadata={"help": "dropout while training"})
    max_tags: int = field(default=4, metadata={"help": "tags per item kept as side information"})
    max_title_tokens: int = field(default=12, metadata={"help": "title tokens per item kept as side information"})
    epochs: int = field(default=10, metadata={"help": "passes over the training sequences"})
    batch_size: int = field(default=64, metadata={"help": "sequences per step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    holdout: int = field(default=5, metadata={"help": "last K interactions held out (as in the question set)"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed and data, same weights"})

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown sequence encoder '{self.kind}': choose one of {', '.join(KINDS)}")
        if self.dim < 2 or self.layers < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError("need dim >= 2, layers >= 1, heads >= 1 and dim divisible by heads")
        if self.kind == "llama" and (self.dim // self.heads) % 2:
            raise ValueError("llama: the head width (dim / heads) must be even for rotary embeddings")
        if self.max_len < 2 or self.epochs < 1 or self.batch_size < 1 or self.holdout < 1:
            raise ValueError("need max_len >= 2, epochs >= 1, batch_size >= 1 and holdout >= 1")
        if not 0 <= self.dropout < 1 or self.learning_rate <= 0:
            raise ValueError("need 0 <= dropout < 1 and learning_rate > 0")


def title_tokens(title: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", title.lower())


@dataclass
class Vocabulary:
    """Item ids, tags and title tokens -> indices from 1 (0 is padding). Built from the catalogue
    in sorted order, so the same catalogue always gives the same indices."""

    item_ids: list[str]
    tags: list[str]
    tokens: list[str]

    @classmethod
    def from_items(cls, items: dict[str, Item]) -> Vocabulary:
        tags = sorted({t for item in items.values() for t in item.tags} | {
            item.category for item in items.values() if not item.tags and item.category})
        counts = Counter(tok for item in items.values() for tok in set(title_tokens(item.title)))
        tokens = sorted(tok for tok, n in counts.items() if n >= 2)  # a token on one item is only its id again
        return cls(sorted(items), tags, tokens)

    def side_tables(self, items: dict[str, Item], config: SequenceEncoderConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """Per item (row = item index): its tag indices and title-token indices, zero-padded."""
        tag_index = {t: i + 1 for i, t in enumerate(self.tags)}
        token_index = {t: i + 1 for i, t in enumerate(self.tokens)}
        tags = torch.zeros(len(self.item_ids) + 1, config.max_tags, dtype=torch.long)
        tokens = torch.zeros(len(self.item_ids) + 1, config.max_title_tokens, dtype=torch.long)
        for row, item_id in enumerate(self.item_ids, start=1):
            item = items[item_id]
            own = [tag_index[t] for t in (item.tags or ((item.category,) if item.category else ()))][:config.max_tags]
            tags[row, :len(own)] = torch.tensor(own, dtype=torch.long)
            words = [token_index[t] for t in title_tokens(item.title) if t in token_index][:config.max_title_tokens]
            tokens[row, :len(words)] = torch.tensor(words, dtype=torch.long)
        return tags, tokens


class ItemFeatures(nn.Module):
    """One vector per item: [id embedding | mean tag embedding | mean title-token embedding] -> dim."""

    def __init__(self, n_items: int, n_tags: int, n_tokens: int, tags: torch.Tensor, tokens: torch.Tensor, dim: int):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.tag = nn.Embedding(n_tags + 1, dim, padding_idx=0)
        self.token = nn.Embedding(n_tokens + 1, dim, padding_idx=0)
        self.register_buffer("tags", tags)
        self.register_buffer("tokens", tokens)
        self.fuse = nn.Linear(3 * dim, dim)

    @staticmethod
    def _mean(embedding: nn.Embedding, indices: torch.Tensor) -> torch.Tensor:
        present = (indices > 0).unsqueeze(-1).float()
        return (embedding(indices) * present).sum(-2) / present.sum(-2).clamp(min=1)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        parts = [self.item(items), self._mean(self.tag, self.tags[items]), self._mean(self.token, self.tokens[items])]
        return self.fuse(torch.cat(parts, dim=-1))

    def catalogue(self) -> torch.Tensor:
        return self.forward(torch.arange(1, self.item.num_embeddings, device=self.item.weight.device))


class SASRecBackbone(nn.Module):
    def __init__(self, config: SequenceEncoderConfig):
        super().__init__()
        self.positions = nn.Embedding(config.max_len, config.dim)
        layer = nn.TransformerEncoderLayer(config.dim, config.heads, 4 * config.dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        x = x + self.positions(torch.arange(length, device=x.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=x.device)
        return self.norm(self.blocks(x, mask=mask, is_causal=True))


class GRU4RecBackbone(nn.Module):
    def __init__(self, config: SequenceEncoderConfig):
        super().__init__()
        self.gru = nn.GRU(config.dim, config.dim, config.layers, batch_first=True,
                          dropout=config.dropout if config.layers > 1 else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary(x: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotate each (even, odd) pair of features of ``x`` [B, heads, L, head_dim] by an angle that
    grows with the position: attention scores then depend on relative positions (RoPE)."""
    half = x.shape[-1] // 2
    frequencies = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)[:, None] * frequencies
    cos, sin = angles.cos(), angles.sin()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class LlamaBlock(nn.Module):
    def __init__(self, config: SequenceEncoderConfig):
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.attention_norm, self.mlp_norm = RMSNorm(config.dim), RMSNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        hidden = 4 * config.dim
        self.gate, self.up = nn.Linear(config.dim, hidden, bias=False), nn.Linear(config.dim, hidden, bias=False)
        self.down = nn.Linear(hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(rotary(q), rotary(k), v, is_causal=True,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        normed = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(normed)) * self.up(normed))


class LlamaBackbone(nn.Module):
    def __init__(self, config: SequenceEncoderConfig):
        super().__init__()
        self.blocks = nn.ModuleList(LlamaBlock(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


_BACKBONES = {"sasrec": SASRecBackbone, "gru4rec": GRU4RecBackbone, "llama": LlamaBackbone}


class SequenceEncoder(nn.Module):
    """Item-index sequences [B, L] (right-padded with 0) -> per-step states [B, L, dim]."""

    def __init__(self, config: SequenceEncoderConfig, vocabulary: Vocabulary, tags: torch.Tensor,
                 tokens: torch.Tensor):
        super().__init__()
        self.config, self.vocabulary = config, vocabulary
        self.features = ItemFeatures(len(vocabulary.item_ids), len(vocabulary.tags), len(vocabulary.tokens),
                                     tags, tokens, config.dim)
        self.dropout = nn.Dropout(config.dropout)
        self.backbone = _BACKBONES[config.kind](config)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.dropout(self.features(items)))

    def user_embedding(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The state after each user's last real step: what predicts their next item."""
        states = self.forward(items)
        return states[torch.arange(items.shape[0]), lengths - 1]

    def scores(self, states: torch.Tensor) -> torch.Tensor:
        """Logits over the whole catalogue (column i is item index i + 1)."""
        return states @ self.features.catalogue().T


def _batch(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sequences])
    padded = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        padded[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    return padded, lengths


def ranking_metrics(model: SequenceEncoder, histories: list[list[int]], targets: list[int], k: int = 10,
                    batch_size: int = 256) -> dict:
    """Recall@k and NDCG@k of each target against the whole catalogue, given its history."""
    model.eval()
    hits, gains = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(histories), batch_size):
            padded, lengths = _batch(histories[start:start + batch_size])
            scores = model.scores(model.user_embedding(padded, lengths))
            target = torch.tensor(targets[start:start + batch_size]) - 1
            # rank = items scored strictly higher than the target (ties count in the target's favour)
            ranks = (scores > scores.gather(1, target[:, None])).sum(1)
            hits += float((ranks < k).sum())
            gains += float(((ranks < k).float() / torch.log2(ranks.float() + 2)).sum())
    n = max(len(histories), 1)
    return {f"recall@{k}": round(hits / n, 4), f"ndcg@{k}": round(gains / n, 4)}


def popularity_metrics(train: list[list[int]], histories: list[list[int]], targets: list[int], k: int = 10) -> dict:
    """The same metrics for always recommending the most frequent training items."""
    top = [item for item, _ in sorted(Counter(i for s in train for i in s).items(), key=lambda kv: (-kv[1], kv[0]))]
    position = {item: rank for rank, item in enumerate(top[:k])}
    ranks = [position.get(t) for t in targets]
    n = max(len(targets), 1)
    return {f"recall@{k}": round(sum(r is not None for r in ranks) / n, 4),
            f"ndcg@{k}": round(sum(1 / math.log2(r + 2) for r in ranks if r is not None) / n, 4)}


def sequences(events: list[Event], vocabulary: Vocabulary, config: SequenceEncoderConfig
              ) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """Item-index sequences: per user, the training sequence (the last ``max_len + 1`` history
    steps), and the test history (the last ``max_len``) with its target, the first held-out item.
    The cut is the question set's, so no held-out interaction is ever trained on."""
    from journeys.uqa_questions import cut_history

    index = {item_id: i + 1 for i, item_id in enumerate(vocabulary.item_ids)}
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    train, histories, targets = [], [], []
    for user_id in sorted(by_user):
        cut = cut_history(user_id, by_user[user_id], config.holdout)
        history = [index[e.item_id] for e in cut.history]
        if len(history) >= 2:
            train.append(history[-(config.max_len + 1):])
        if history and cut.heldout:
            histories.append(history[-config.max_len:])
            targets.append(index[cut.heldout[0].item_id])
    if not train:
        raise ValueError("no user has two history interactions to learn a next item from")
    return train, histories, targets


def pretrain(events: list[Event], items: dict[str, Item], config: SequenceEncoderConfig,
             out: str | None = None) -> tuple[SequenceEncoder, dict]:
    """Train on every user's history (next-item, full softmax) and test on their first held-out
    item; save to ``out`` when given. Returns the model and the metadata written beside it."""
    torch.manual_seed(config.seed)
    vocabulary = Vocabulary.from_items(items)
    train, histories, targets = sequences(events, vocabulary, config)
    model = SequenceEncoder(config, vocabulary, *vocabulary.side_tables(items, config))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    order = torch.Generator().manual_seed(config.seed)
    losses = []
    for _ in range(config.epochs):
        model.train()
        total, steps = 0.0, 0
        for batch in torch.randperm(len(train), generator=order).split(config.batch_size):
            padded, lengths = _batch([train[i] for i in batch.tolist()])
            inputs, labels = padded[:, :-1], padded[:, 1:] - 1  # padding becomes -1: ignored
            logits = model.scores(model(inputs))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(round(total / steps, 4))
    metadata = {
        "config": asdict(config),
        "data": {"users_trained": len(train), "users_tested": len(targets), "items": len(vocabulary.item_ids),
                 "tags": len(vocabulary.tags), "title_tokens": len(vocabulary.tokens),
                 "sha256": _data_hash(events)},
        "metrics": {"train_loss": losses, "test": ranking_metrics(model, histories, targets),
                    "most_popular": popularity_metrics(train, histories, targets)},
    }
    if out:
        save(model, metadata, out)
    return model, metadata


def _data_hash(events: list[Event]) -> str:
    digest = hashlib.sha256()
    for event in sorted(events, key=lambda e: (e.user_id, e.ts, e.item_id)):
        digest.update(f"{event.user_id}\x1f{event.item_id}\x1f{event.ts}\n".encode())
    return digest.hexdigest()


def save(model: SequenceEncoder, metadata: dict, out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    (folder / CONFIG_FILE).write_text(json.dumps({**metadata, "vocabulary": asdict(model.vocabulary)}) + "\n")


def load_encoder(folder: str) -> tuple[SequenceEncoder, dict]:
    path = Path(folder)
    if not (path / CONFIG_FILE).exists():
        raise FileNotFoundError(f"'{folder}' holds no {CONFIG_FILE}: pass a folder from `journeys uqabench pretrain`")
    metadata = json.loads((path / CONFIG_FILE).read_text())
    config, vocabulary = SequenceEncoderConfig(**metadata["config"]), Vocabulary(**metadata["vocabulary"])
    state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model = SequenceEncoder(config, vocabulary, state["features.tags"], state["features.tokens"])
    model.load_state_dict(state)
    model.eval()
    return model, metadata
