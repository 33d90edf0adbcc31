"""The fast, LLM-free namer: a readable phrase from the journey's own words.

Candidates are the journey's salient terms and tags plus short phrases from its representative
titles. They are ranked by similarity to the journey centroid with Maximal Marginal Relevance (as
KeyBERT does), so the top phrases are both central and not repeats of each other. A one-word winner
is joined with the next non-overlapping phrase, so the result reads like "Sourdough Bread Baking"
rather than "bread_sourdough_starter_loaf".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from journeys.embedding import DEFAULT_MODEL, Embedder, model_identity
from journeys.naming.base import Namer, NameResult
from journeys.naming.boilerplate import without_boilerplate
from journeys.naming.grounding import grounding_scores, unit_centroid
from journeys.naming.validation import dedupe, problem, title_case
from journeys.representation import tokens


@dataclass(frozen=True)
class KeywordNamerConfig:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "sentence encoder for ranking phrases"})
    diversity: float = field(default=0.3, metadata={"help": "MMR trade-off: 0 = most central phrases only"})
    max_words: int = field(default=4, metadata={"help": "longest name assembled"})
    top_terms: int = field(default=10, metadata={"help": "salient terms considered per journey"})
    top_titles: int = field(default=5, metadata={"help": "representative titles mined for phrases"})

    def __post_init__(self):
        if not 0 <= self.diversity < 1:
            raise ValueError("diversity must be in [0, 1)")
        if self.max_words < 1:
            raise ValueError("max_words must be at least 1")


def candidates(journey: dict, top_terms: int, top_titles: int = 5) -> list[str]:
    """Lower-case phrases, in a fixed order: salient terms, then 2-3 word phrases of the titles."""
    found: list[str] = []
    for term in journey.get("salient_terms", [])[:top_terms]:
        found.append(term["term"].replace("-", " ").replace("_", " "))
    for title in journey.get("representative_titles", [])[:top_titles]:
        words = tokens(title)
        for size in (2, 3):
            found.extend(" ".join(words[i:i + size]) for i in range(len(words) - size + 1))
    unique: list[str] = []
    for phrase in found:
        phrase = " ".join(phrase.split())
        if phrase and phrase not in unique:
            unique.append(phrase)
    return unique


def original_casing(titles: list[str]) -> dict[str, str]:
    """How the titles write each word that is not plain lower case ("UK", "DIY", "iPhone"), so
    that lower-cased candidate phrases can be shown the way the items spell them."""
    casing: dict[str, str] = {}
    for title in titles:
        for word in re.findall(r"\w[\w'-]*", title):
            if len(word) > 1 and (word.isupper() or word[1:] != word[1:].lower()):
                casing.setdefault(word.casefold(), word)
    return casing


def display(phrase: str, casing: dict[str, str]) -> str:
    return title_case(" ".join(casing.get(w, w) for w in phrase.split()))


def mmr(relevance: np.ndarray, similarity: np.ndarray, diversity: float, k: int) -> list[int]:
    """Indices chosen greedily by (1 - diversity) * relevance - diversity * redundancy."""
    chosen: list[int] = []
    remaining = list(range(len(relevance)))
    while remaining and len(chosen) < k:
        redundancy = similarity[np.ix_(remaining, chosen)].max(axis=1) if chosen else np.zeros(len(remaining))
        scores = (1 - diversity) * relevance[remaining] - diversity * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


def compose(ranked: list[str], max_words: int) -> str:
    """The top phrase; a single word is joined with the next phrase that shares no word with it."""
    if not ranked:
        return ""
    name = ranked[0]
    if len(name.split()) == 1:
        for other in ranked[1:]:
            if not set(other.split()) & set(name.split()) and len(other.split()) + 1 <= max_words:
                name = f"{other} {name}" if len(other.split()) == 1 else f"{name} {other}"
                break
    return " ".join(name.split()[:max_words])


class KeywordNamer(Namer):
    strategy = "keywords"

    def __init__(self, config: KeywordNamerConfig | None = None, embedder: Embedder | None = None):
        self.config = config or KeywordNamerConfig()
        self.embedder = embedder or Embedder(self.config.model)

    def name(self, journeys: list[dict]) -> list[NameResult]:
        if not journeys:
            return []
        journeys = [without_boilerplate(j) for j in journeys]  # what repeats verbatim names nothing
        per_journey = [candidates(j, self.config.top_terms, self.config.top_titles) for j in journeys]
        phrases = sorted({p for c in per_journey for p in c})
        vectors = dict(zip(phrases, self.embedder.encode(phrases))) if phrases else {}

        names, alternatives = [], []
        for journey, options in zip(journeys, per_journey):
            ranked = self._rank(journey, options, vectors)
            titles = list(journey.get("representative_titles", []))
            casing = original_casing(titles)
            shown = [display(p, casing) for p in ranked]
            acceptable = [p for p in shown if problem(p, titles) is None]
            name = display(compose(ranked, self.config.max_words), casing) if ranked else ""
            if problem(name, titles) is not None:
                name = acceptable[0] if acceptable else "Untitled Interest"
            names.append(name)
            alternatives.append([a for a in acceptable if a != name])

        names = dedupe(names, [j["user_id"] for j in journeys], alternatives)
        scores = grounding_scores(self.embedder, names, journeys)
        model = model_identity(self.config.model)
        return [
            NameResult(
                journey_id=journey["journey_id"],
                name=name,
                strategy=self.strategy,
                model=model,
                adapter=None,
                template_version=None,
                grounding=score,
            )
            for journey, name, score in zip(journeys, names, scores)
        ]

    def _rank(self, journey: dict, options: list[str], vectors: dict[str, np.ndarray]) -> list[str]:
        if not options:
            return []
        matrix = np.stack([vectors[p] for p in options])
        relevance = matrix @ unit_centroid(journey, self.embedder.dimension)
        order = mmr(relevance, matrix @ matrix.T, self.config.diversity, k=len(options))
        return [options[i] for i in order]
