"""The catalogue statistics the item representation needs, computed once per run in Beam.

Over the items that have events, with their text vectors: the mean text vector (centring), the tag
vocabulary with its document frequencies and mean tag vector (the tags block), and the mean of the
given item vectors (the embedding block). Every sum is of integers (fixed point for the means), so
the statistics do not depend on the order the runner combines items in: reruns are byte-identical.
"""

from __future__ import annotations

from collections import Counter

import apache_beam as beam

from journeys import centring
from journeys.item_space import ItemSpace, TagSpace, tag_fixed_sums, tag_terms, unit_vector


class CatalogueMean(beam.CombineFn):
    """(count, fixed-point sum) of vectors -> (mean, count). Integer sums are exact, so the mean is
    the same whatever order the runner adds the items in (byte-identical reruns)."""

    def create_accumulator(self):
        return 0, None

    def add_input(self, accumulator, vector):
        count, total = accumulator
        fixed = centring.to_fixed(vector)
        return count + 1, fixed if total is None else total + fixed

    def merge_accumulators(self, accumulators):
        count, total = 0, None
        for n, part in accumulators:
            if part is not None:
                count, total = count + n, part if total is None else total + part
        return count, total

    def extract_output(self, accumulator):
        count, total = accumulator
        return None if total is None else (centring.mean_from_fixed(total, count), count)


class _SumCounters(beam.CombineFn):
    """Counters (term -> int) summed; integers, so in any order the same."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, accumulator, counts):
        accumulator.update(counts)
        return accumulator

    def merge_accumulators(self, accumulators):
        total = Counter()
        for part in accumulators:
            total.update(part)
        return total

    def extract_output(self, accumulator):
        return dict(accumulator)


# The count of tagged items travels in the same counters as the terms, under a key no term can be.
_TAGGED = "\x00tagged items"


def _term_counts(terms: tuple) -> dict:
    return {**{t: 1 for t in terms}, _TAGGED: 1}


def _item_sums(terms: tuple, df: dict) -> dict:
    return {**tag_fixed_sums(terms, df, df[_TAGGED]), _TAGGED: 1}


def _tag_space(df: dict, sums: dict) -> TagSpace:
    terms = {t: n for t, n in df.items() if t != _TAGGED}
    return TagSpace.from_sums(terms, {t: n for t, n in sums.items() if t != _TAGGED}, sums.get(_TAGGED, 0))


class CatalogueStatistics(beam.PTransform):
    """(Item, text vector) of the items with events -> one dict: ``text_mean`` ((mean, count) or None
    without centring), ``tag_space`` (a TagSpace), ``embedding_mean`` ((mean, count), or None when no
    item carries a vector) and ``dimensions`` (text and embedding widths)."""

    def __init__(self, centre_text: bool):
        super().__init__()
        self.centre_text = centre_text

    def expand(self, pairs):
        parts = {}
        if self.centre_text:
            parts["text_mean"] = (pairs | "TextVectors" >> beam.Map(lambda pair: pair[1])
                                  | "TextMean" >> beam.CombineGlobally(CatalogueMean()))
        terms = (pairs | "TagTerms" >> beam.Map(lambda pair: tag_terms(pair[0]))
                 | "Tagged" >> beam.Filter(bool))
        df = (terms | "TermCounts" >> beam.Map(_term_counts)
              | "DocumentFrequency" >> beam.CombineGlobally(_SumCounters()))
        sums = (terms | "TagVectors" >> beam.Map(_item_sums, df=beam.pvalue.AsSingleton(df))
                | "TagSums" >> beam.CombineGlobally(_SumCounters()))
        parts["tag_space"] = df | "TagSpace" >> beam.Map(_tag_space, sums=beam.pvalue.AsSingleton(sums))
        parts["embedding_mean"] = (
            pairs | "GivenVectors" >> beam.FlatMap(lambda pair: [] if pair[0].embedding is None
                                                   else [unit_vector(pair[0].embedding)])
            | "EmbeddingMean" >> beam.CombineGlobally(CatalogueMean()))
        parts["dimensions"] = (
            pairs | "Dimensions" >> beam.Map(lambda pair: {"text": len(pair[1]),
                                                           "embedding": len(pair[0].embedding or ())})
            | "Widest" >> beam.CombineGlobally(_widest))
        sides = {name: beam.pvalue.AsSingleton(part) for name, part in parts.items()}
        return (pairs.pipeline | "StatisticsTrigger" >> beam.Create([None])
                | "Statistics" >> beam.Map(lambda _, **stats: {"text_mean": None, **stats}, **sides))


def _widest(dimensions) -> dict:
    """Each block's width: the largest seen (the input check makes given vectors all one length)."""
    widest: dict = {}
    for entry in dimensions:
        for name, width in entry.items():
            widest[name] = max(widest.get(name, 0), width)
    return widest


def item_space(blocks: tuple[str, ...], weights: dict, stats: dict) -> ItemSpace:
    """The run's ItemSpace: ``blocks`` with the catalogue statistics. A tags block over a catalogue
    with no tags has no terms and weighs nothing (every item's tags part is empty)."""
    text_mean, embedding_mean = stats["text_mean"], stats["embedding_mean"]
    return ItemSpace(blocks, weights, text_mean[0] if text_mean else None,
                     stats["tag_space"] if "tags" in blocks else None,
                     embedding_mean[0] if embedding_mean and "embedding" in blocks else None)
