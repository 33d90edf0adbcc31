"""What every naming strategy returns, and the interface it implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

# The start of the fallback reason of an LLM namer whose keyword candidate was closer to the journey
# than every model answer: the model did answer, so this is a choice, not a failure.
KEYWORD_CHOSEN = "keyword name chosen"


@dataclass(frozen=True)
class NameResult:
    journey_id: str
    name: str
    strategy: str
    model: str | None
    adapter: str | None
    template_version: str | None
    grounding: float  # cosine between the name's embedding and the journey centroid
    fell_back: bool = False
    fallback_reason: str | None = None

    @property
    def keyword_chosen(self) -> bool:
        return self.fell_back and (self.fallback_reason or "").startswith(KEYWORD_CHOSEN)


class Namer(ABC):
    """Names a batch of journey records (dicts with the journeys schema's fields)."""

    strategy: str

    @abstractmethod
    def name(self, journeys: list[dict]) -> list[NameResult]:
        """One result per journey, in order; names of one user's journeys are distinct."""
