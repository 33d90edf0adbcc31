"""Clustering strategies: each a config dataclass, one Extractor class and one registry line."""

from journeys.extraction import density, icpc  # noqa: F401  (importing registers them)
from journeys.extraction.base import NOISE, Extractor, make_extractor, strategies

__all__ = ["NOISE", "Extractor", "make_extractor", "strategies"]
