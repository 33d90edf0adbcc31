"""The persistence filter: what separates a journey from a passing, transient interest."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PersistenceConfig:
    # Defaults chosen by a sweep on the sample data (see README "Choosing the defaults").
    min_items: int = field(default=4, metadata={"help": "fewest distinct items in a journey"})
    min_span_days: float = field(default=7.0, metadata={"help": "fewest days from first to last event"})
    min_active_days: int = field(default=4, metadata={"help": "fewest distinct days with an event"})

    def __post_init__(self):
        if self.min_items < 1 or self.min_active_days < 1 or self.min_span_days < 0:
            raise ValueError("persistence thresholds must be >= 1 item, >= 0 days span, >= 1 active day")

    def failure(self, num_items: int, span_days: float, active_days: int) -> str | None:
        """Why a cluster is transient, or None when it is a journey."""
        reasons = []
        if num_items < self.min_items:
            reasons.append(f"{num_items} items < {self.min_items}")
        if span_days < self.min_span_days:
            reasons.append(f"span {span_days:.1f} days < {self.min_span_days:g}")
        if active_days < self.min_active_days:
            reasons.append(f"{active_days} active days < {self.min_active_days}")
        return "; ".join(reasons) or None

    def score(self, num_items: int, span_days: float, active_days: int) -> float:
        """0-1, for ranking: each factor saturates at four times its threshold (a month-long,
        12-day journey scores 1 with the defaults), and the score is their geometric mean."""
        factors = (
            min(1.0, num_items / (4 * self.min_items)),
            min(1.0, span_days / max(4 * self.min_span_days, 1e-9)),
            min(1.0, active_days / (4 * self.min_active_days)),
        )
        product = 1.0
        for factor in factors:
            product *= max(factor, 1e-6)
        return round(product ** (1 / 3), 4)
