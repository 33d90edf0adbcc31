"""ICPC: time-ordered threshold clustering with centroid update, a merge pass and a minimum size.

After Christakopoulou et al. (2023): each item, in order of first interaction, joins the most
similar journey when the cosine to its centroid clears ``threshold``, else it seeds a new journey.
Journeys smaller than ``min_size`` are then merged into their most similar journey when that clears
``merge_threshold``; what is still too small is noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from journeys.extraction.base import NOISE, Extractor, register, relabel_by_first_member


@dataclass(frozen=True)
class ICPCConfig:
    threshold: float = field(default=0.4, metadata={"help": "cosine to a centroid needed to join it"})
    merge_threshold: float = field(
        default=0.3, metadata={"help": "cosine needed to merge a too-small journey into another"}
    )
    min_size: int = field(default=3, metadata={"help": "fewest distinct items a journey keeps"})
    centroid_merge_threshold: float = field(
        default=0.5,
        metadata={"help": "journeys of any size whose centroids are at least this similar are "
                  "merged (two halves of one interest); 1.0 turns the pass off"},
    )
    refine: bool = field(
        default=True,
        metadata={"help": "after the pass, move each item to its most similar final centroid, "
                  "undoing early decisions made against half-formed centroids"},
    )

    def __post_init__(self):
        if not -1 <= self.merge_threshold <= self.threshold <= 1:
            raise ValueError("need -1 <= merge_threshold <= threshold <= 1")
        if not -1 <= self.centroid_merge_threshold <= 1:
            raise ValueError("centroid_merge_threshold must be in [-1, 1]")
        if self.min_size < 1:
            raise ValueError("min_size must be at least 1")


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def _label_sums(vectors: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Row ``j`` = the sum of the vectors labelled ``j`` (noise left out). Sorting once and summing
    runs with ``reduceat`` is many times faster than ``np.add.at`` on a heavy user's thousands of items."""
    sums = np.zeros((count, vectors.shape[1]), dtype=np.float64)
    kept = labels != NOISE
    if not kept.any():
        return sums
    order = np.argsort(labels[kept], kind="stable")
    ordered = labels[kept][order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sums[ordered[starts]] = np.add.reduceat(vectors[kept][order].astype(np.float64), starts, axis=0)
    return sums


def _centroids(vectors: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    return _unit(_label_sums(vectors, labels, count))


class ICPCExtractor(Extractor):
    name = "icpc"

    def __init__(self, config: ICPCConfig | None = None):
        self.config = config or ICPCConfig()

    def cluster(self, vectors: np.ndarray, visits: np.ndarray | None = None) -> np.ndarray:
        config = self.config
        n = len(vectors)
        labels = np.full(n, NOISE, dtype=np.int64)
        if n == 0:
            return labels
        sums = np.zeros((n, vectors.shape[1]), dtype=np.float64)  # at most one journey per item
        units = np.zeros_like(sums)  # each journey's unit centroid, updated as its member joins
        count = 0
        for index, vector in enumerate(vectors):
            best = None
            if count:
                similarity = units[:count] @ vector
                best = int(np.argmax(similarity))
            # `best` may be 0, a valid journey: compare with None, never by truthiness.
            if best is not None and similarity[best] >= config.threshold:
                labels[index] = best
            else:
                labels[index] = count
                count += 1
            label = labels[index]
            sums[label] += vector
            units[label] = _unit(sums[label])
        labels = self._merge_similar(vectors, labels, count)
        labels = self._merge_small(vectors, labels, count)
        if config.refine:
            labels = self._refine(vectors, labels)
        return relabel_by_first_member(labels)

    def _merge_similar(self, vectors: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
        """Agglomerate journeys whose centroids clear ``centroid_merge_threshold``, closest first.

        Averaging cancels the noise of single titles, so two halves of one interest have far more
        similar centroids than any two items do, while different interests stay apart."""
        if count < 2 or self.config.centroid_merge_threshold >= 1:
            return labels
        sums = _label_sums(vectors, labels, count)
        units = _unit(sums)
        alive = np.ones(count, dtype=bool)
        similarity = units @ units.T
        np.fill_diagonal(similarity, -np.inf)
        # Each row's most similar partner (first on ties), so that finding the closest pair costs
        # one pass over the rows rather than over the whole matrix: the same pair, in the same order.
        best = similarity.argmax(axis=1)
        best_similarity = similarity[np.arange(count), best]
        while True:
            a = int(np.argmax(best_similarity))
            b = int(best[a])
            if best_similarity[a] < self.config.centroid_merge_threshold:
                break
            keep, gone = min(a, b), max(a, b)  # keep the older journey's number
            labels[labels == gone] = keep
            sums[keep] += sums[gone]
            units[keep] = _unit(sums[keep])
            alive[gone] = False
            similarity[gone, :] = similarity[:, gone] = -np.inf
            row = units @ units[keep]
            row[~alive] = -np.inf
            row[keep] = -np.inf
            similarity[keep, :] = similarity[:, keep] = row
            best_similarity[gone] = -np.inf
            stale = alive & ((best == keep) | (best == gone))
            stale[keep] = True
            rows = np.flatnonzero(stale)
            best[rows] = similarity[rows].argmax(axis=1)
            best_similarity[rows] = similarity[rows, best[rows]]
            closer = alive & ~stale & ((row > best_similarity) | ((row == best_similarity) & (keep < best)))
            best[closer] = keep
            best_similarity[closer] = row[closer]
        return labels

    def _merge_small(self, vectors: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
        config = self.config
        sizes = np.bincount(labels, minlength=count)
        sums = _label_sums(vectors, labels, count)  # kept up to date on each merge: no recount per journey
        # Smallest first, ties by creation order, so the result does not depend on dict order.
        centroids = _unit(sums)
        for small in sorted(range(count), key=lambda j: (sizes[j], j)):
            if sizes[small] == 0 or sizes[small] >= config.min_size:
                continue
            similarity = centroids @ centroids[small]
            similarity[small] = -np.inf
            similarity[sizes == 0] = -np.inf
            target = int(np.argmax(similarity))
            if np.isfinite(similarity[target]) and similarity[target] >= config.merge_threshold:
                labels[labels == small] = target
                sizes[target] += sizes[small]
                sums[target] += sums[small]
                centroids[target] = _unit(sums[target])
                sizes[small] = 0
        sizes = np.bincount(labels[labels != NOISE], minlength=count)
        labels[np.isin(labels, np.flatnonzero((sizes > 0) & (sizes < config.min_size)))] = NOISE
        return labels

    def _refine(self, vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
        kept = np.unique(labels[labels != NOISE])
        if len(kept) < 2:
            return labels
        centroids = _centroids(vectors, labels, int(kept.max()) + 1)[kept]
        similarity = vectors @ centroids.T
        best = kept[np.argmax(similarity, axis=1)]
        clustered = labels != NOISE
        moved = clustered & (similarity.max(axis=1) >= self.config.threshold)
        labels = labels.copy()
        labels[moved] = best[moved]
        sizes = np.bincount(labels[labels != NOISE], minlength=int(kept.max()) + 1)
        labels[np.isin(labels, np.flatnonzero((sizes > 0) & (sizes < self.config.min_size)))] = NOISE
        return labels


register(ICPCConfig, ICPCExtractor)
