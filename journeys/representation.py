"""What describes a cluster of items: salient terms (c-TF-IDF style) and representative titles."""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

import numpy as np

from journeys.model import Item

# A small English stop list: enough to keep "the", "how", "vs" out of salient terms without a
# dependency. Terms still have to earn their weight through the IDF factors below.
STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be been before being best both but by can
    did do does doing down during each episode every few first for from full get got had has have
    having he her here his how i if in into is it its just let like live made make makes more most
    my new no not now of off on once one only or other our out over own part same she should so some
    such than that the their them then there these they this those through to too top under up us
    very vs was we week were what when where which while who why will with without would you your
    ways way things thing really review guide tips video videos official watch minutes
    """.split()
)
_TOKEN = re.compile(r"\w[\w'-]*", re.UNICODE)


def tokens(text: str) -> list[str]:
    words = [w.strip("'-") for w in _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())]
    return [w for w in words if len(w) > 1 and not w.isdigit() and w not in STOPWORDS]


@functools.lru_cache(maxsize=1 << 16)
def item_terms(item: Item) -> frozenset[str]:
    """Unigrams and bigrams of the title (adjacent content words) plus whole tags. Cached: a popular
    item is in thousands of users' histories, and tokenising is most of what describing costs."""
    words = tokens(item.title)
    terms = set(words)
    terms.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    terms.update(t.casefold() for t in item.tags if t.strip())
    return frozenset(terms)


def catalogue_idf(document_frequency: int, catalogue_size: int) -> float:
    """Smoothed IDF over the catalogue; an unseen term counts as appearing once."""
    df = max(1, document_frequency)
    return math.log((1 + catalogue_size) / (1 + df)) + 1.0


def salient_terms(
    clusters: list[list[Item]],
    catalogue_df: dict[str, int],
    catalogue_size: int,
    top_k: int = 10,
) -> list[list[tuple[str, float]]]:
    """Per cluster, terms frequent in it and rare across the user's other clusters and the catalogue.

    weight = (share of the cluster's items with the term)
             x log(1 + clusters / clusters with the term)      # rare among this user's interests
             x catalogue IDF                                     # rare in the catalogue
    normalised so the top term weighs 1. A term must appear in two items of a cluster that has
    three or more, so one odd title does not name an interest.
    """
    term_sets = [[item_terms(item) for item in cluster] for cluster in clusters]
    presence = [Counter(t for terms in sets for t in terms) for sets in term_sets]
    clusters_with = Counter(t for counts in presence for t in counts)
    n_clusters = len(clusters)
    result = []
    for cluster, counts in zip(clusters, presence):
        size = len(cluster)
        floor = 2 if size >= 3 else 1
        scored = []
        for term, count in counts.items():
            if count < floor:
                continue
            weight = (
                (count / size)
                * math.log(1 + n_clusters / clusters_with[term])
                * catalogue_idf(catalogue_df.get(term, 1), catalogue_size)
            )
            scored.append((term, weight))
        scored.sort(key=lambda tw: (-tw[1], tw[0]))
        top = scored[: top_k * 2]
        # Drop a unigram already covered by a higher-ranked bigram ("bread" under "sourdough bread").
        kept: list[tuple[str, float]] = []
        for term, weight in top:
            if " " not in term and any(term in k.split() for k, _ in kept if " " in k):
                continue
            kept.append((term, weight))
        kept = kept[:top_k]
        best = kept[0][1] if kept else 1.0
        result.append([(term, round(weight / best, 4)) for term, weight in kept])
    return result


def _normalised_title(title: str) -> str:
    return " ".join(tokens(title)) or title.casefold().strip()


def representative_titles(items: list[Item], vectors: np.ndarray, centroid: np.ndarray, k: int = 5) -> list[str]:
    """Titles of the items closest to the centroid, skipping near-identical repeats."""
    order = np.lexsort(([it.item_id for it in items], -(vectors @ centroid)))
    seen: set[str] = set()
    titles: list[str] = []
    for index in order:
        key = _normalised_title(items[index].title)
        if key in seen:
            continue
        seen.add(key)
        titles.append(items[index].title)
        if len(titles) == k:
            break
    return titles


def document_terms(items: Iterable[Item]) -> Counter:
    """Catalogue document frequency of every term (used for the catalogue IDF)."""
    counts: Counter = Counter()
    for item in items:
        counts.update(item_terms(item))
    return counts
