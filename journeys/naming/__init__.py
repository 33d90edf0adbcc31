"""Naming journeys: one Namer interface, validated and deduplicated names, grounded in the items."""

from journeys.naming.base import Namer, NameResult
from journeys.naming.keywords import KeywordNamer, KeywordNamerConfig

__all__ = ["KeywordNamer", "KeywordNamerConfig", "NameResult", "Namer"]
