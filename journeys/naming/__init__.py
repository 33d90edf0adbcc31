"""Naming journeys: one Namer interface, validated and deduplicated names, grounded in the items."""

from journeys.embedding import DEFAULT_MODEL
from journeys.naming.base import Namer, NameResult
from journeys.naming.keywords import KeywordNamer, KeywordNamerConfig

NAMERS = ("keywords", "few-shot", "prompt-tuned", "fine-tuned")


def create_namer(strategy: str, model: str | None = None, adapter: str | None = None,
                 encoder: str = DEFAULT_MODEL, torch_threads: int = 1, embedder=None, **options) -> Namer:
    """The namer for ``strategy``; ``options`` are LLMNamerConfig fields (max_titles, exemplars...).
    An ``embedder`` already loaded for ``encoder`` can be shared between namers."""
    from journeys.embedding import Embedder

    if strategy not in NAMERS:
        raise ValueError(f"unknown namer '{strategy}': choose one of {', '.join(NAMERS)}")
    embedder = embedder or Embedder(encoder, torch_threads=torch_threads)
    if strategy == "keywords":
        return KeywordNamer(KeywordNamerConfig(model=encoder), embedder)
    from journeys.naming.llm import LLMNamer, LLMNamerConfig

    config = LLMNamerConfig(strategy=strategy, model=model, adapter=adapter, encoder=encoder, **options)
    return LLMNamer(config, embedder, torch_threads=torch_threads)


__all__ = ["NAMERS", "KeywordNamer", "KeywordNamerConfig", "NameResult", "Namer", "create_namer"]
