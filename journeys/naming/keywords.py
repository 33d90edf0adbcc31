"""The fast, LLM-free namer: a readable phrase for what the journey's items have in common.

Candidates, each with the share of the journey's items that carry it:

- the journey's salient terms (c-TF-IDF over the items' title words and whole tags: a genre, a
  director, "sourdough"). Extraction keeps a term only when two or more of the journey's items have
  it. A term that the representative titles contain gets the share of those titles that contain it;
  a term found in none of them is a whole tag (or words of less central titles), and its salient
  weight (share of items x rarity, top term 1) stands in for its share.
- 2-3 word phrases of the representative titles that two or more distinct titles share ("Star Wars",
  "Beverly Hills Cop", "bamboo steamer"). A phrase of one title only is a fragment of that item
  ("Phantom Menace", "Tried Seaborn Statistical"), not what the journey is about; such phrases are
  used only when the journey has no shared candidate at all. Phrases never span a title's
  punctuation ("Star Wars: Episode VI - Return of the Jedi" gives "Star Wars", not "Star Wars
  Episode"), a salient term that the titles hold only across such a break ("bill vol" of "Kill Bill:
  Vol. 2") is dropped, and a phrase inside a longer one that as many titles share ("Hills Cop" in
  "Beverly Hills Cop") gives way to it. A title phrase is shown as the titles write it, stop words
  and all ("Back to the Future", not "Back Future"). A lone article or preposition of another
  language ("la", "de", "der": foreign titles make them salient) is no candidate.

Ranking is Maximal Marginal Relevance (as KeyBERT does) with relevance = cosine to the journey
centroid + ``shared_weight`` x share of items, so the name is central, says what most items share,
and the runners-up are not repeats of it. The winner stands alone unless it is one word: then it is
joined with the next phrase that shares no word with it and is not a name, so the result reads like
"Sourdough Bread Baking" or "Crime Thriller" rather than "bread_sourdough_starter_loaf". A name
here is a title phrase written capitalised wherever the titles have it ("Star Wars", "Ace Ventura")
or a multi-word tag that no title holds (a director: "Steven Spielberg"); "Thriller Star Wars" and
"Comedy Carl Reiner" describe neither thing, so a name is only ever used whole, on its own.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from journeys.embedding import DEFAULT_MODEL, Embedder, model_identity
from journeys.naming.base import Namer, NameResult
from journeys.naming.boilerplate import without_boilerplate
from journeys.naming.grounding import grounding_scores, unit_centroid
from journeys.naming.validation import dedupe, problem, title_case
from journeys.representation import STOPWORDS

_WORD = re.compile(r"\w[\w'-]*", re.UNICODE)  # a word as journeys.representation.tokens finds it
# Where a title's parts meet; a phrase never spans one.
_BREAK = re.compile(r"[:;|()\[\]{}!?,\"“”«»/·•]|\s[-–—]+\s|[–—]|\.(?=\s|$)")
# Articles and prepositions of other languages: titles of foreign films make them salient ("la",
# "de", "der"), but alone they name nothing. Only a one-word candidate is dropped for them.
FOREIGN_FUNCTION_WORDS = frozenset(
    """al au aux con da dal das de dei del dell della dem den der des di die du een el en et het il
    la las le les lo los na nel och per sur um un una une uno van von y za""".split()
)
MAX_SHOWN_WORDS = 5  # a title phrase longer than this as written is shown by its content words
FALLBACK_TITLES = 5  # titles mined for one-title phrases when the journey has no shared candidate


@dataclass(frozen=True)
class KeywordNamerConfig:
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "sentence encoder for ranking phrases"})
    diversity: float = field(default=0.3, metadata={"help": "MMR trade-off: 0 = most central phrases only"})
    max_words: int = field(default=4, metadata={"help": "longest name assembled"})
    top_terms: int = field(default=10, metadata={"help": "salient terms considered per journey"})
    top_titles: int = field(default=20, metadata={"help": "representative titles mined for shared phrases"})
    shared_weight: float = field(default=0.3, metadata={
        "help": "relevance added per unit of the share of items that carry a phrase"})

    def __post_init__(self):
        if not 0 <= self.diversity < 1:
            raise ValueError("diversity must be in [0, 1)")
        if self.max_words < 1:
            raise ValueError("max_words must be at least 1")
        if self.shared_weight < 0:
            raise ValueError("shared_weight must be at least 0")


@dataclass(frozen=True)
class Candidate:
    key: str  # the content words, lower case: "back future"
    text: str  # as shown, before title casing: "Back to the Future", "woody allen"
    share: float  # share of the journey's items that carry it (an estimate, see the module docstring)
    words: int  # words as the items write them: the tag "sci-fi" is one
    proper: bool  # a name (see the module docstring): used whole, never joined with another phrase


@dataclass
class _Phrase:
    titles: int = 0
    text: str = ""
    proper: bool = True


def _content_words(text: str) -> list[tuple[str, str, int, int]]:
    """(token, word as written, start, end) for the words ``tokens`` keeps, in the NFKC text."""
    found = []
    for match in _WORD.finditer(text):
        raw = match.group()
        word = raw.strip("'-")
        token = word.casefold()
        if len(token) > 1 and not token.isdigit() and token not in STOPWORDS:
            start = match.start() + len(raw) - len(raw.lstrip("'-"))
            found.append((token, word, start, start + len(word)))
    return found


def _capitalised(word: str) -> bool:
    return not word[:1].isalpha() or word[:1].isupper()


def title_phrases(titles: list[str], max_size: int = 3) -> tuple[dict[str, _Phrase], set[str]]:
    """Runs of 1..``max_size`` content words inside one part of a title, each with the number of
    distinct titles that have it, how the first of them writes it and whether every title writes it
    capitalised (one word first in a sentence-case part does not count); and the runs of
    the titles' words that cross a part's edge, which are fragments."""
    phrases: dict[str, _Phrase] = {}
    crossing: set[str] = set()
    seen: set[str] = set()
    for title in titles:
        text = unicodedata.normalize("NFKC", str(title))
        words = _content_words(text)
        if not words or (key := " ".join(w[0] for w in words)) in seen:
            continue
        seen.add(key)
        breaks = [m.start() for m in _BREAK.finditer(text)]
        part = [sum(b < start for b in breaks) for _, _, start, _ in words]
        # A word first in its part is capitalised anyway, unless the whole part is in title case.
        title_cased = {p for p in set(part) if all(_capitalised(w[1]) for w, q in zip(words, part) if q == p)}
        first_in_part = [(i == 0 or part[i] != part[i - 1]) and part[i] not in title_cased
                         for i in range(len(words))]
        in_title: dict[str, tuple[str, bool]] = {}
        for size in range(1, max_size + 1):
            for i in range(len(words) - size + 1):
                run = words[i:i + size]
                phrase = " ".join(w[0] for w in run)
                if part[i] != part[i + size - 1]:
                    crossing.add(phrase)
                    continue
                capitalised = all(_capitalised(w[1]) for w in run) and (size > 1 or not first_in_part[i])
                shown = text[run[0][2]:run[-1][3]]
                shown = shown if len(shown.split()) <= MAX_SHOWN_WORDS else " ".join(w[1] for w in run)
                surface, was = in_title.get(phrase, (shown, True))
                in_title[phrase] = (surface, was and capitalised)
        for phrase, (surface, capitalised) in in_title.items():
            entry = phrases.setdefault(phrase, _Phrase(text=surface))
            entry.titles += 1
            entry.proper = entry.proper and capitalised
    return phrases, crossing - set(phrases)


def _within(short: str, long: str) -> bool:
    a, b = short.split(), long.split()
    return len(a) < len(b) and any(b[i:i + len(a)] == a for i in range(len(b) - len(a) + 1))


def candidates(journey: dict, top_terms: int, top_titles: int = 20) -> list[Candidate]:
    """The journey's candidates in a fixed order: salient terms, then title phrases that 2+ titles
    share; one-title phrases only when there is nothing else."""
    titles = [str(t) for t in journey.get("representative_titles", [])][:top_titles]
    phrases, crossing = title_phrases(titles)
    counted = max(1, len({" ".join(w[0] for w in _content_words(unicodedata.normalize("NFKC", t))) for t in titles}))
    found: dict[str, Candidate] = {}
    for term in journey.get("salient_terms", [])[:top_terms]:
        raw = " ".join(str(term["term"]).replace("_", " ").split())
        key = " ".join(w[0] for w in _content_words(raw))
        if not key or key in found or key in crossing or key in FOREIGN_FUNCTION_WORDS:
            continue
        if key in phrases:
            entry = phrases[key]
            found[key] = Candidate(key, entry.text, entry.titles / counted, len(raw.split()), entry.proper)
        else:  # a whole tag, or words of titles that are not among the representative ones
            share = min(1.0, max(0.0, float(term.get("weight") or 0.0)))
            found[key] = Candidate(key, raw.replace("-", " "), share, len(raw.split()), " " in raw)
    for key, entry in phrases.items():
        if entry.titles >= 2 and 2 <= len(key.split()) and key not in found:
            found[key] = Candidate(key, entry.text, entry.titles / counted, len(key.split()), entry.proper)
    kept = [c for c in found.values()
            if not (c.key in phrases and any(_within(c.key, o.key) and o.key in phrases
                                              and phrases[o.key].titles >= phrases[c.key].titles
                                              for o in found.values()))]
    if kept:
        return kept
    fallback = {key: entry for key, entry in title_phrases(titles[:FALLBACK_TITLES])[0].items()
                if len(key.split()) >= 2}
    return [Candidate(key, entry.text, entry.titles / counted, len(key.split()), entry.proper)
            for key, entry in fallback.items()]


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


def _words(key: str) -> set[str]:
    return set(key.replace("-", " ").split())  # "sim-racing" shares a word with "racing"


def compose(ranked: list[Candidate], max_words: int) -> str:
    """The top phrase; a one-word winner is joined with the next phrase that shares no word with it
    and is not a name (the single word last, as the most central: "Crime Thriller")."""
    if not ranked:
        return ""
    winner = ranked[0]
    name = winner.text
    if winner.words == 1:
        for other in ranked[1:]:
            length = len(other.text.split()) + len(name.split())
            if other.proper or _words(other.key) & _words(winner.key) or length > max_words:
                continue
            name = f"{other.text} {name}" if other.words == 1 else f"{name} {other.text}"
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
        texts = sorted({c.text.casefold() for options in per_journey for c in options})
        vectors = dict(zip(texts, self.embedder.encode(texts))) if texts else {}

        names, alternatives = [], []
        for journey, options in zip(journeys, per_journey):
            ranked = self._rank(journey, options, vectors)
            titles = list(journey.get("representative_titles", []))
            casing = original_casing(titles)
            shown = [display(c.text, casing) for c in ranked]
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

    def _rank(self, journey: dict, options: list[Candidate], vectors: dict[str, np.ndarray]) -> list[Candidate]:
        if not options:
            return []
        matrix = np.stack([vectors[c.text.casefold()] for c in options])
        share = np.array([c.share for c in options], dtype=matrix.dtype)
        relevance = matrix @ unit_centroid(journey, self.embedder.dimension) + self.config.shared_weight * share
        order = mmr(relevance, matrix @ matrix.T, self.config.diversity, k=len(options))
        return [options[i] for i in order]
