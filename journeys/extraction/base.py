"""The interface every clustering strategy implements, and the registry that names them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

NOISE = -1


class Extractor(ABC):
    """Clusters one user's items. Constructors only store their config; ``cluster`` is pure."""

    name: ClassVar[str]

    @abstractmethod
    def cluster(self, vectors: np.ndarray, visits: np.ndarray | None = None) -> np.ndarray:
        """Labels for ``vectors`` (one L2-normalised row per distinct item, in order of first
        interaction; ``visits`` counts each item's events): ``0..k-1`` for clusters, ``NOISE`` for
        items in no cluster. Deterministic."""


_REGISTRY: dict[str, tuple[type, type[Extractor]]] = {}


def register(config_class: type, extractor_class: type[Extractor]) -> None:
    _REGISTRY[extractor_class.name] = (config_class, extractor_class)


def strategies() -> list[str]:
    return sorted(_REGISTRY)


def make_extractor(name: str, **params: Any) -> Extractor:
    """Build a strategy by name; unknown parameters and invalid values raise ValueError."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy '{name}': choose one of {', '.join(strategies())}")
    config_class, extractor_class = _REGISTRY[name]
    known = {f.name for f in fields(config_class)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"strategy '{name}' has no parameter(s) {sorted(unknown)}; it takes {sorted(known)}")
    return extractor_class(config_class(**params))


def relabel_by_first_member(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... in order of their first member, noise kept as NOISE."""
    mapping: dict[int, int] = {}
    out = np.full_like(labels, NOISE)
    for index, label in enumerate(labels):
        if label == NOISE:
            continue
        out[index] = mapping.setdefault(int(label), len(mapping))
    return out
