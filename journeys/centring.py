"""Removing the catalogue's common direction before clustering.

Sentence embeddings of one domain's items share a large common component: on MovieLens the mean of
the item vectors has norm 0.70 and two random films have cosine 0.48. Against that background a
growing cluster's centroid stays close to almost any item of the catalogue and absorbs it, so a
heavy user's whole history ends up in one journey. Subtracting the mean of the run's item vectors
(and renormalising) leaves what tells items apart: random pairs then average cosine 0.00, and an
absolute threshold means the same thing on every catalogue. The mean is computed once per run, from
exact integer sums so that it does not depend on the order the items arrive in.
"""

from __future__ import annotations

import hashlib

import numpy as np

CENTRINGS = ("mean", "none")
FIXED_SCALE = 2.0**32  # fixed point: |v| <= 1, so int64 sums stay exact for up to 2 billion items


def to_fixed(vector: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(vector, dtype=np.float64) * FIXED_SCALE).astype(np.int64)


def mean_from_fixed(total: np.ndarray, count: int) -> np.ndarray:
    return (total.astype(np.float64) / FIXED_SCALE / max(count, 1)).astype(np.float32)


def centre(vectors: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """``vectors`` minus ``mean``, L2-normalised row by row; unchanged when ``mean`` is None."""
    if mean is None:
        return vectors
    shifted = vectors.astype(np.float32) - mean.astype(np.float32)
    return shifted / np.maximum(np.linalg.norm(shifted, axis=-1, keepdims=True), 1e-12)


def describe(mean: np.ndarray, items: int) -> dict:
    """What the summary records of the mean: enough to check two runs used the same one."""
    return {
        "method": "mean",
        "items": items,
        "mean_norm": round(float(np.linalg.norm(mean)), 6),
        "mean_sha256": hashlib.sha256(np.asarray(mean, dtype=np.float32).tobytes()).hexdigest(),
        "mean": [round(float(x), 6) for x in mean],
    }
