"""Per-user HDBSCAN over L2-normalised item vectors (euclidean on the unit sphere ~ cosine)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from journeys.extraction.base import NOISE, Extractor, register, relabel_by_first_member


@dataclass(frozen=True)
class HDBSCANConfig:
    min_cluster_size: int = field(default=3, metadata={"help": "fewest distinct items in a cluster"})
    min_samples: int = field(default=2, metadata={"help": "neighbourhood size for core distances"})
    selection: str = field(
        default="leaf",
        metadata={"help": "'leaf' gives fine-grained interests; 'eom' prefers fewer, broader ones"},
    )
    max_fit_items: int = field(
        default=2000,
        metadata={"help": "a user with more distinct items is fitted on the most-visited ones and "
                  "the rest are assigned with approximate_predict, keeping heavy users tractable"},
    )

    def __post_init__(self):
        if self.min_cluster_size < 2:
            raise ValueError("min_cluster_size must be at least 2")
        if self.min_samples < 1:
            raise ValueError("min_samples must be at least 1")
        if self.selection not in ("leaf", "eom"):
            raise ValueError("selection must be 'leaf' or 'eom'")
        if self.max_fit_items < self.min_cluster_size:
            raise ValueError("max_fit_items must be at least min_cluster_size")


class HDBSCANExtractor(Extractor):
    name = "hdbscan"

    def __init__(self, config: HDBSCANConfig | None = None):
        self.config = config or HDBSCANConfig()

    def cluster(self, vectors: np.ndarray, visits: np.ndarray | None = None) -> np.ndarray:
        import hdbscan

        config = self.config
        n = len(vectors)
        labels = np.full(n, NOISE, dtype=np.int64)
        if n < max(config.min_cluster_size, 3):
            return labels
        fit_index = np.arange(n)
        if n > config.max_fit_items:
            visits = np.ones(n) if visits is None else visits
            # most visited first, ties by first interaction: deterministic
            fit_index = np.sort(np.lexsort((np.arange(n), -visits))[: config.max_fit_items])
        model = hdbscan.HDBSCAN(
            min_cluster_size=config.min_cluster_size,
            min_samples=min(config.min_samples, len(fit_index) - 1),
            metric="euclidean",
            cluster_selection_method=config.selection,
            prediction_data=len(fit_index) < n,
            core_dist_n_jobs=1,
        )
        fit_vectors = vectors[fit_index].astype(np.float64)
        labels[fit_index] = model.fit_predict(fit_vectors)
        if len(fit_index) < n:
            rest = np.setdiff1d(np.arange(n), fit_index)
            predicted, _ = hdbscan.approximate_predict(model, vectors[rest].astype(np.float64))
            labels[rest] = predicted
        return relabel_by_first_member(labels)


register(HDBSCANConfig, HDBSCANExtractor)
