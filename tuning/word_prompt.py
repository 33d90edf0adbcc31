"""A soft prompt made of the LLM's own word embeddings, chosen by meaning (integration mode ``words``).

A linear soft prompt starts as noise in the LLM's input space: a small LLM trained for a few hundred
steps learns to ignore it (measured: a 135M model stayed at chance while a cosine between the same
user embedding and the options answered most interest questions). This adapter starts where the
LLM can already read:

- the **vocabulary**: the LLM's whole-word tokens (a leading space, 3+ letters; one per word
  whatever its case), each with the sentence encoder's embedding of the word (its *key*) and the
  LLM's own input embedding;
- **queries**: a linear map of the user vector into the sentence encoder's space. When the vector
  starts with two encoder-space pools (the journey encoder's long-term and recent pools) the map
  starts as the identity on them, so before any training each query *is* a pool; otherwise it
  starts random;
- **tokens**: soft token i is the softmax(cosine(query, keys) / temperature)-weighted mix of the
  words' input embeddings, with the words that earlier tokens peaked on masked out, so k tokens
  spread over k different words. The first half of the tokens read the first query (long-term),
  the rest the second (recent). A short text lead (``word_lead``, "User interests:") goes first.

The map and the temperature train; keys and word embeddings stay fixed (they are rebuilt from the
tokenizer, the LLM and the sentence encoder, never saved with an adapter). Placed first, like a soft
prompt. Encoding some 30,000 words takes about a minute on one thread, so the keys are also kept
under ``$JOURNEYS_CACHE/word-keys``, named by a hash of the sentence encoder and the word list: any
change of either is a new file, and a file that does not read back as the right shape is rebuilt.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile

import numpy as np
import torch
from torch import nn

from journeys.embedding import Embedder, model_identity
from journeys.llms import cache_dir
from tuning.uqa_llm import masked_mean

WORD = re.compile(r"[A-Za-z]{3,}")
_VOCABULARIES: dict[str, tuple[list[int], torch.Tensor]] = {}  # read once per process


def vocabulary_words(tokenizer) -> list[tuple[int, str]]:
    """(token id, word) of the tokens that are a whole word after a space, one per case-folded word
    (the lower-case spelling where the vocabulary has it, else the first id), in id order."""
    chosen: dict[str, tuple[int, str]] = {}
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        word = text.strip()
        if not (text.startswith(" ") and WORD.fullmatch(word)):
            continue
        key = word.casefold()
        if key not in chosen or (word == key and chosen[key][1] != key):
            chosen[key] = (token_id, word)
    return sorted(chosen.values())


def word_keys(tokenizer, embedder) -> tuple[list[int], torch.Tensor]:
    """Token ids of the vocabulary's words and their unit-length sentence-encoder embeddings [V, d]."""
    words = vocabulary_words(tokenizer)
    if not words:
        raise ValueError("the LLM's vocabulary has no whole-word tokens: the words mode cannot build its prompt")
    texts = [w for _, w in words]
    digest = hashlib.sha256("\n".join([model_identity(embedder.model_name), *texts]).encode()).hexdigest()[:24]
    if digest not in _VOCABULARIES:
        path = cache_dir() / "word-keys" / f"{digest}.npy"
        keys = _read_keys(path, len(texts))
        if keys is None:
            keys = np.asarray(embedder.encode(texts), dtype=np.float32)
            _write_keys(path, keys)
        _VOCABULARIES[digest] = ([i for i, _ in words], nn.functional.normalize(torch.from_numpy(keys), dim=-1))
    return _VOCABULARIES[digest]


def _read_keys(path, rows: int) -> np.ndarray | None:
    """The cached keys, or None when the file is missing, unreadable or not a row per word (then rebuilt)."""
    try:
        keys = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    good = keys.ndim == 2 and keys.shape[0] == rows and keys.dtype == np.float32 and np.isfinite(keys).all()
    return keys if good else None


def _write_keys(path, keys: np.ndarray) -> None:
    """Written beside and renamed into place, so a killed run never leaves a half file under the name;
    a cache that cannot be written only costs the next run the encoding."""
    scratch = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            scratch = handle.name
            np.save(handle, keys, allow_pickle=False)
        os.replace(scratch, path)
    except OSError:
        if scratch and os.path.exists(scratch):
            os.unlink(scratch)


class WordPrompt(nn.Module):
    prefix = True

    def __init__(self, width: int, keys: torch.Tensor, embeddings: torch.Tensor, tokens: int,
                 temperature: float, lead: torch.Tensor | None = None):
        super().__init__()
        key_dim = keys.shape[1]
        self.tokens, self.key_dim = tokens, key_dim
        self.queries = 2 if width >= 2 * key_dim and tokens > 1 else 1
        self.project = nn.Linear(width, self.queries * key_dim)
        if width >= self.queries * key_dim:
            with torch.no_grad():  # start as the pools themselves (see the module's docstring)
                self.project.weight.zero_()
                self.project.bias.zero_()
                self.project.weight[:, :self.queries * key_dim] = torch.eye(self.queries * key_dim)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.register_buffer("keys", keys, persistent=False)
        self.register_buffer("embeddings", embeddings, persistent=False)
        # the input embeddings of a short text put before the words ("User interests:"): the first
        # position of a prompt draws attention whatever it holds, so a word placed there is read least
        lead = embeddings.new_zeros(0, embeddings.shape[1]) if lead is None else lead
        self.register_buffer("lead", lead, persistent=False)

    @property
    def prefix_length(self) -> int:
        """Positions the prompt takes: the lead's tokens and the word tokens."""
        return self.lead.shape[0] + self.tokens

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        queries = self.project(masked_mean(states, mask)).view(states.shape[0], self.queries, self.key_dim)
        scores = nn.functional.normalize(queries, dim=-1) @ self.keys.T / self.log_temperature.exp()
        taken = torch.zeros(scores.shape[0], scores.shape[2], dtype=torch.bool, device=scores.device)
        first_half = (self.tokens + 1) // 2
        tokens = []
        for index in range(self.tokens):
            query = 0 if index < first_half or self.queries == 1 else 1
            current = scores[:, query].masked_fill(taken, float("-inf"))
            tokens.append(current.softmax(-1) @ self.embeddings)
            taken = taken | nn.functional.one_hot(current.argmax(-1), scores.shape[2]).bool()
        lead = self.lead.expand(scores.shape[0], -1, -1)
        return torch.cat([lead, torch.stack(tokens, dim=1)], dim=1)


def build_word_prompt(width: int, tokens: int, temperature: float, lead: str, llm, tokenizer) -> WordPrompt:
    ids, keys = word_keys(tokenizer, Embedder())
    table = llm.get_input_embeddings().weight.detach()
    embeddings = table[torch.tensor(ids)].clone().float()
    lead_ids = tokenizer(lead, add_special_tokens=False)["input_ids"] if lead else []
    lead_embeddings = table[torch.tensor(lead_ids, dtype=torch.long)].clone().float() if lead_ids else None
    return WordPrompt(width, keys, embeddings, tokens, temperature, lead_embeddings)
