"""Grounding: how well a name matches its journey, as the cosine between the name's sentence
embedding and the journey centroid (both in the extraction's embedding space)."""

from __future__ import annotations

import numpy as np

from journeys.embedding import Embedder


def unit_centroid(journey: dict, dimension: int) -> np.ndarray:
    centroid = np.asarray(journey["centroid"], dtype=np.float32)
    if centroid.shape[0] != dimension:
        raise ValueError(
            f"journey {journey['journey_id']} has a {centroid.shape[0]}-d centroid but the namer's sentence "
            f"encoder gives {dimension}-d vectors: name with the extraction's embedding model "
            f"({journey.get('embedding_model')})")
    norm = np.linalg.norm(centroid)
    return centroid / norm if norm else centroid


def grounding_scores(embedder: Embedder, names: list[str], journeys: list[dict]) -> list[float]:
    if not names:
        return []
    vectors = embedder.encode(names)
    return [round(float(v @ unit_centroid(j, embedder.dimension)), 4) for v, j in zip(vectors, journeys)]
