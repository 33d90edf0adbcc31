"""The item representation the clustering sees: named blocks, each centred and unit length.

- ``text``: the sentence encoder's vector of the item's title and context (as before), centred by
  the run's catalogue mean (``journeys.centring``).
- ``tags``: a sparse concept space over the catalogue's tags and categories, in the spirit of ICPC's
  salient terms: each item is the unit TF-IDF vector of its tag terms (a term on fewer items of the
  catalogue weighs more), centred by the catalogue's mean tag vector. Films that share a director or
  a rare genre are close here even when their titles share nothing.
- ``embedding``: the team's own item vectors (two-tower, co-watch, item2vec), unit-normalised and
  centred by their catalogue mean.
- ``sessions``: for a history judged by the log rule only (each item filed once: ratings, tags), the
  sitting the user filed the item in (sittings are told apart by gaps of more than an hour), one-hot.
  A tagger files what they think of together: on HetRec MovieLens the order of filing predicts a
  user's own tag groups about as well as the films' content. In a history of returns a day of
  browsing mixes interests, so there the block is left out. It weighs less by default (0.35 against
  1: 15% of the cosine beside text and tags).

Each block is centred and unit-normalised, multiplied by the square root of its share of the
weights, and the rows are concatenated and normalised again: the cosine of two items is then the
weighted mean of their blocks' cosines (an item without tags has an empty tags block, which then
counts for nothing, rather than a vector that would make every untagged item alike).

The catalogue statistics (the means, the tag vocabulary and its document frequencies) are computed
once per run from exact integer sums, so they do not depend on the order items arrive in, and their
SHA-256 is recorded in the summary. What reads text (names, grounding, lineage, exemplars, the
journey user encoder) keeps reading the journey's centroid in the text encoder's space: the blocks
decide only which items go together.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from journeys import centring
from journeys.model import Item

BLOCKS = ("text", "tags", "embedding", "sessions")
DEFAULT_WEIGHTS = {"sessions": 0.35}
SESSION_GAP_MICROS = 3600 * 1_000_000  # a pause longer than this starts a new sitting


def parse_blocks(text: str | None) -> tuple[str, ...] | None:
    """``"text,tags"`` -> ("text", "tags"); None (the default: every block the items support)."""
    if text is None or text.strip() in ("", "auto"):
        return None
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in BLOCKS]
    if unknown or not names:
        raise ValueError(f"--representation: unknown block {', '.join(map(repr, unknown)) or '(none)'}; "
                         f"choose from {', '.join(BLOCKS)}, comma-separated")
    return names


def parse_weights(text: str | None) -> dict[str, float]:
    """``"text=1,tags=0.5"`` -> {"text": 1.0, "tags": 0.5}; a block not named weighs 1."""
    weights: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in BLOCKS:
            raise ValueError(f"--block_weights: '{part.strip()}' is not BLOCK=WEIGHT with BLOCK one of "
                             f"{', '.join(BLOCKS)}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"--block_weights: '{value.strip()}' is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"--block_weights: the weight of {name} must be a finite number >= 0")
        weights[name] = weight
    return weights


# ---- the tags block --------------------------------------------------------------------------

def tag_terms(item: Item) -> tuple[str, ...]:
    """An item's concepts: its tags and its category, case-folded, each once, sorted."""
    terms = {t.strip().casefold() for t in item.tags if t and t.strip()}
    if item.category and item.category.strip():
        terms.add(item.category.strip().casefold())
    return tuple(sorted(terms))


def idf(document_frequency: int, items: int) -> float:
    """The square root of the smoothed IDF of salient terms. Damped: with plain IDF a rare tag (a
    director with two films) outweighs the genres an item shares with others so far that items of
    one genre look unrelated; on HetRec MovieLens 40 of 225 users then got no journey at all (16
    with the square root), and recall of their own tag groups was 0.137 against 0.141."""
    return math.sqrt(math.log((1 + items) / (1 + document_frequency)) + 1.0)


def _unit_tfidf(terms: tuple[str, ...], df: dict[str, int], items: int) -> list[tuple[str, float]]:
    weights = [idf(df.get(t, 1), items) for t in terms]
    norm = math.sqrt(sum(w * w for w in weights)) or 1.0
    return [(t, w / norm) for t, w in zip(terms, weights)]


def tag_fixed_sums(terms: tuple[str, ...], df: dict[str, int], items: int) -> dict[str, int]:
    """One tagged item's unit TF-IDF vector in fixed point: summed over the catalogue (in any order,
    exactly) these give the mean tag vector."""
    return {t: int(round(v * centring.FIXED_SCALE)) for t, v in _unit_tfidf(terms, df, items)}


@dataclass(frozen=True)
class TagSpace:
    """The catalogue's tag vocabulary (sorted), each term's document frequency, the number of tagged
    items, and the mean of their unit TF-IDF vectors."""

    terms: tuple[str, ...]
    document_frequency: tuple[int, ...]
    tagged_items: int
    mean: np.ndarray  # float64, one value per term
    _index: dict = field(default_factory=dict, compare=False, repr=False)
    _df: dict = field(default_factory=dict, compare=False, repr=False)  # term -> document frequency

    def __post_init__(self):
        self._index.update({t: i for i, t in enumerate(self.terms)})
        self._df.update(zip(self.terms, self.document_frequency))  # once, not per user

    @classmethod
    def from_sums(cls, df: dict[str, int], sums: dict[str, int], tagged_items: int) -> TagSpace:
        terms = tuple(sorted(df))
        mean = np.array([sums.get(t, 0) / centring.FIXED_SCALE / max(tagged_items, 1) for t in terms])
        return cls(terms, tuple(df[t] for t in terms), tagged_items, mean)

    @classmethod
    def fit(cls, items: Iterable[Item]) -> TagSpace:
        """In memory: the same statistics the pipeline computes over its items (for tests, notebooks)."""
        term_lists = [terms for terms in (tag_terms(it) for it in items) if terms]
        df = Counter(t for terms in term_lists for t in terms)
        sums: Counter = Counter()
        for terms in term_lists:
            sums.update(tag_fixed_sums(terms, df, len(term_lists)))
        return cls.from_sums(dict(df), dict(sums), len(term_lists))

    @property
    def dimension(self) -> int:
        return len(self.terms)

    def block(self, items: list[Item]) -> np.ndarray:
        """The centred, unit tags block of these items, exact but compact: one column per term the
        items carry, plus one column standing for every other term of the vocabulary (a centred
        vector is minus the mean there, the same for every item, so one shared column with the norm
        of that rest gives the same dot products and norms). An item without tags gets zeros."""
        sparse = [_unit_tfidf(tag_terms(it), self._df, self.tagged_items) for it in items]
        columns = sorted({self._index[t] for row in sparse for t, _ in row if t in self._index})
        position = {c: p for p, c in enumerate(columns)}
        mean_here = self.mean[columns] if columns else np.zeros(0)
        rest = math.sqrt(max(0.0, float(self.mean @ self.mean) - float(mean_here @ mean_here)))
        block = np.zeros((len(items), len(columns) + 1), dtype=np.float64)
        for row, values in enumerate(sparse):
            if not values:
                continue
            block[row, :-1] = -mean_here
            block[row, -1] = rest
            for term, value in values:
                if term in self._index:
                    block[row, position[self._index[term]]] += value
        return _unit_rows(block)

    def describe(self) -> dict:
        digest = hashlib.sha256()
        for term, count in zip(self.terms, self.document_frequency):
            digest.update(f"{term}\x1f{count}\x1e".encode())
        digest.update(np.asarray(self.mean, dtype=np.float64).tobytes())
        return {"terms": len(self.terms), "tagged_items": self.tagged_items, "sha256": digest.hexdigest()}


def sessions_of(first_seen: list[int]) -> list[int]:
    """The sitting of each item, from the times it was first seen (in the order given): a new
    sitting starts after a pause longer than ``SESSION_GAP_MICROS`` between those times."""
    times = sorted(set(first_seen))
    sitting, number, last = {}, 0, None
    for t in times:
        if last is not None and t - last > SESSION_GAP_MICROS:
            number += 1
        sitting[t], last = number, t
    return [sitting[t] for t in first_seen]


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def unit_vector(values) -> np.ndarray:
    """A given item vector as unit-length float32 (the embedding block before centring)."""
    vector = np.asarray(values, dtype=np.float64)
    norm = np.linalg.norm(vector)
    return (vector / norm if norm else vector).astype(np.float32)


# ---- the whole representation ----------------------------------------------------------------

@dataclass(frozen=True)
class ItemSpace:
    """Which blocks the clustering sees, their weights and the catalogue statistics they need."""

    blocks: tuple[str, ...] = ("text",)
    weights: dict = field(default_factory=dict)
    text_mean: np.ndarray | None = None  # None: the text block is not centred (--centring none)
    tag_space: TagSpace | None = None
    embedding_mean: np.ndarray | None = None

    def __post_init__(self):
        if "tags" in self.blocks and self.tag_space is None:
            raise ValueError("the tags block needs the catalogue's tag space")
        if not any(self.weight(b) > 0 for b in self.blocks):
            raise ValueError("at least one chosen block must have a weight above 0")

    def weight(self, block: str) -> float:
        return float(self.weights.get(block, DEFAULT_WEIGHTS.get(block, 1.0)))

    def vectors(self, items: list[Item], text_vectors: np.ndarray, embeddings: list | None = None,
                sessions: list[int] | None = None) -> np.ndarray:
        """The rows the clustering compares, for ``items`` with their text vectors (and given vectors,
        and for a log history the sitting each item was filed in; without it the sessions block is
        left out)."""
        blocks = [b for b in self.blocks if b != "sessions" or sessions is not None]
        if blocks == ["text"]:  # as before blocks existed: the same floats, the same journeys
            return centring.centre(text_vectors, self.text_mean)
        total = sum(self.weight(b) for b in blocks)
        if total == 0:  # only the sessions block weighs, and this history is not a log
            return centring.centre(text_vectors, self.text_mean)
        parts = []
        for block in blocks:
            share = self.weight(block) / total
            if share == 0:
                continue
            if block == "text":
                part = centring.centre(text_vectors, self.text_mean)
            elif block == "tags":
                part = self.tag_space.block(items)
            elif block == "sessions":
                part = np.zeros((len(items), max(sessions, default=0) + 1))
                part[np.arange(len(items)), sessions] = 1.0
            else:
                given = np.stack([unit_vector(v) for v in embeddings]) if embeddings else np.zeros((0, 0))
                part = centring.centre(given, self.embedding_mean)
            parts.append(np.asarray(part, dtype=np.float64) * math.sqrt(share))
        return _unit_rows(np.concatenate(parts, axis=1)).astype(np.float32)

    def describe(self, text_dimension: int | None = None, embedding_dimension: int | None = None) -> dict:
        """What the summary records: each block's dimension, weight and statistics."""
        described = []
        for block in self.blocks:
            entry = {"name": block, "weight": self.weight(block)}
            if block == "text":
                entry["dimension"] = text_dimension
                entry["centring"] = "mean" if self.text_mean is not None else "none"
            elif block == "tags":
                entry |= {"dimension": self.tag_space.dimension, **self.tag_space.describe()}
            elif block == "sessions":
                entry |= {"applies_to": "users judged by the log rule",
                          "gap_seconds": SESSION_GAP_MICROS // 1_000_000}
            else:
                entry["dimension"] = embedding_dimension
                if self.embedding_mean is not None:
                    entry["mean_sha256"] = hashlib.sha256(
                        np.asarray(self.embedding_mean, dtype=np.float32).tobytes()).hexdigest()
            described.append(entry)
        return {"blocks": described}
