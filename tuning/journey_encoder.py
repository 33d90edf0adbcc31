"""The journey encoder: a user embedding from the user's extracted journeys, with no sequence model.

    [ long-term pool | recent pool | scalar features ]      width = 2 * centroid_dim + 7

- **long-term pool**: the mean of the journeys' unit-length centroids weighted by size and
  persistence, ``log1p(num_events) * (0.5 + 0.5 * persistence)``, then scaled to unit length. The
  weight keeps a small or barely persistent journey from counting as much as a months-long one,
  without ever zeroing a journey out.
- **recent pool**: the same with each weight also multiplied by recency,
  ``0.5 ** (age_days / half_life_days)``, where a journey's age is the time from its last event to
  the user's latest journey event. Measuring age from the user's own latest activity (not from
  the wall clock) keeps the embedding the same on every rerun and comparable across users whose
  histories end at different times. Two pools let a reader tell long-standing from current
  interests, which UQABench's interest-perception questions ask about.
- **scalars** (``SCALAR_FEATURES``, in this order): has journeys (0/1), log1p(journeys),
  log1p(events in journeys), size-weighted mean persistence, log1p(days from the first journey's
  start to the last journey's end), the largest journey's share of events, and the share of the
  weight that is recent (sum of recent weights / sum of weights).

A user with no journeys is encoded as all zeros: the pools are empty and "has journeys" is 0. The
arithmetic is in float64 over journeys sorted by id, then rounded to float32, so the same journeys
always give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from journeys.model import MICROS_PER_DAY
from journeys.validation import parse_timestamp

VERSION = "1"
SCALAR_FEATURES = ("has_journeys", "log_journeys", "log_events", "mean_persistence", "log_span_days",
                   "largest_share", "recent_share")
_NEEDED = ("journey_id", "centroid", "num_events", "persistence", "first_ts", "last_ts")


@dataclass(frozen=True)
class JourneyEncoderConfig:
    centroid_dim: int = field(default=384, metadata={"help": "width of the journey centroids (the sentence "
                                                             "encoder's; 384 for the default MiniLM)"})
    half_life_days: float = field(default=30.0, metadata={"help": "recency half-life of the recent pool"})
    embedding_model: str | None = field(default=None, metadata={
        "help": "refuse journeys whose centroids come from another sentence encoder (default: accept any "
                "one model per user)"})

    def __post_init__(self):
        if self.centroid_dim < 1:
            raise ValueError("centroid_dim must be at least 1")
        if not (math.isfinite(self.half_life_days) and self.half_life_days > 0):
            raise ValueError("half_life_days must be a positive number")


class JourneyEncoder:
    name = "journey"
    input = "journeys"

    def __init__(self, config: JourneyEncoderConfig | None = None):
        self.config = config or JourneyEncoderConfig()

    @classmethod
    def from_options(cls, name: str = "journey", torch_threads: int | None = None, **options) -> JourneyEncoder:
        own = {f.name for f in fields(JourneyEncoderConfig)}
        foreign = sorted(k for k, v in options.items() if v is not None and k not in own)
        if foreign:
            raise ValueError(f"option(s) {', '.join(foreign)} do not apply to the journey encoder")
        return cls(JourneyEncoderConfig(**{k: v for k, v in options.items() if v is not None}))

    def config_dict(self) -> dict:
        return asdict(self.config)

    @property
    def version(self) -> str:
        """The encoder's version and a hash of its settings: equal versions, comparable embeddings."""
        digest = hashlib.sha256(json.dumps(self.config_dict(), sort_keys=True).encode()).hexdigest()
        return f"{VERSION}-{digest[:8]}"

    @property
    def width(self) -> int:
        return 2 * self.config.centroid_dim + len(SCALAR_FEATURES)

    def problems(self, journeys: list[dict]) -> list[tuple[str, str]]:
        """Why these journeys cannot be encoded, as (reason, detail); empty when they can."""
        found: list[tuple[str, str]] = []
        models = sorted({str(j.get("embedding_model")) for j in journeys})
        if len(models) > 1:
            found.append(("mixed_embedding_models", f"centroids from {', '.join(models)} cannot be averaged"))
        wanted = self.config.embedding_model
        if wanted and journeys and models != [wanted]:
            found.append(("wrong_embedding_model", f"journeys were embedded with {', '.join(models)}, not {wanted}"))
        for journey in sorted(journeys, key=lambda j: str(j.get("journey_id"))):
            problem = self._journey_problem(journey)
            if problem:
                found.append(problem)
        return found

    def _journey_problem(self, journey: dict) -> tuple[str, str] | None:
        where = f"journey {journey.get('journey_id')}"
        missing = [k for k in _NEEDED if journey.get(k) is None]
        if missing:
            return "missing_field", f"{where} has no {', '.join(missing)}"
        try:
            vector = np.asarray(journey["centroid"], dtype=np.float64)
        except (TypeError, ValueError):
            return "bad_centroid", f"{where}: centroid is not a list of numbers"
        if vector.ndim != 1 or len(vector) != self.config.centroid_dim:
            return "bad_centroid", (f"{where}: centroid has {vector.size} values, expected "
                                    f"{self.config.centroid_dim} (set --centroid_dim to the sentence encoder's width)")
        if not np.all(np.isfinite(vector)) or not np.any(vector):
            return "bad_centroid", f"{where}: centroid is zero or not finite"
        if not (isinstance(journey["num_events"], int) and not isinstance(journey["num_events"], bool)
                and journey["num_events"] >= 1):
            return "bad_journey", f"{where}: num_events must be a positive integer, got {journey['num_events']!r}"
        persistence = journey["persistence"]
        if not (isinstance(persistence, (int, float)) and math.isfinite(persistence) and 0 <= persistence <= 1):
            return "bad_journey", f"{where}: persistence must be in [0, 1], got {journey['persistence']!r}"
        try:
            first, last = parse_timestamp(journey["first_ts"]), parse_timestamp(journey["last_ts"])
        except Exception as err:  # validation's rejection, or a type it cannot read
            return "bad_journey", f"{where}: unreadable time: {err}"
        if last < first:
            return "bad_journey", f"{where}: last_ts is before first_ts"
        return None

    def encode(self, journeys: list[dict]) -> np.ndarray:
        """The user's embedding (float32, ``width`` values); call ``problems`` first."""
        dim = self.config.centroid_dim
        if not journeys:
            return np.zeros(self.width, dtype=np.float32)
        ordered = sorted(journeys, key=lambda j: str(j["journey_id"]))
        centroids = np.asarray([j["centroid"] for j in ordered], dtype=np.float64).reshape(len(ordered), dim)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        events = np.asarray([j["num_events"] for j in ordered], dtype=np.float64)
        persistence = np.asarray([j["persistence"] for j in ordered], dtype=np.float64)
        first = np.asarray([parse_timestamp(j["first_ts"]) for j in ordered], dtype=np.float64)
        last = np.asarray([parse_timestamp(j["last_ts"]) for j in ordered], dtype=np.float64)
        age_days = (last.max() - last) / MICROS_PER_DAY
        weight = np.log1p(events) * (0.5 + 0.5 * persistence)
        recent = weight * 0.5 ** (age_days / self.config.half_life_days)
        scalars = [
            1.0,
            math.log1p(len(ordered)),
            math.log1p(events.sum()),
            float((persistence * events).sum() / events.sum()),
            math.log1p((last.max() - first.min()) / MICROS_PER_DAY),
            float(events.max() / events.sum()),
            float(recent.sum() / weight.sum()),
        ]
        return np.concatenate([_pool(centroids, weight), _pool(centroids, recent), scalars]).astype(np.float32)


def _pool(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    pooled = weights @ vectors / weights.sum()
    norm = np.linalg.norm(pooled)
    return pooled / norm if norm > 0 else pooled
