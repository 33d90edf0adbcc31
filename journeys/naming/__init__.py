"""Naming journeys: one Namer interface, validated and deduplicated names, grounded in the items."""

from journeys.naming.base import Namer, NameResult
from journeys.naming.keywords import KeywordNamer, KeywordNamerConfig

# Strategies that can be chosen today; the LLM namers (few-shot, prompt-tuned, fine-tuned) are not built yet.
NAMERS = ("keywords",)

__all__ = ["NAMERS", "KeywordNamer", "KeywordNamerConfig", "NameResult", "Namer"]
