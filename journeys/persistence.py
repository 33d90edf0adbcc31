"""The persistence filter: what separates a journey from a passing, transient interest.

Time shows persistence only when a user's events carry the times the user acted. Where a user's
whole history sits on a few days (ratings logged in a sitting or two, a bulk import), no cluster can
span weeks, and a time rule would turn every interest into a transient one. ``rule="auto"`` (the
default) therefore judges each user by the time rule when the history itself spans at least
``min_span_days`` over at least ``min_active_days`` days, and otherwise by the count rule (distinct
items only); each user's rule is written to the ``users/`` output and counted in the summary.
Without time a one-day burst of four clicks looks like a small journey, so the count rule asks for
one item more (``count_min_items``, 5): on the bursty sample that removed 63 of 81 bursts reported
as journeys for 1.6 points of recall.

A history that records each item once (a user's ratings or tags, purchases of things bought once)
is a log of what the user chose to record, not of when they pursued an interest: a tagger files
three Kubrick films in one sitting. Neither time nor returns can show persistence there, and three
or four items with something in common are an interest the user named (on HetRec MovieLens tagging
data, 49% of users' own tag groups have 3 or 4 films). ``auto`` therefore judges a user whose
history returns to at most ``log_max_returns`` of its events (the share of events on an item seen
before) by the ``log`` rule: distinct items only, with the floor of the clustering itself
(``log_min_items``: the clustering's minimum cluster size unless set), so every cluster the
clustering keeps is a journey. Where users do return to items, a one-off burst of a few new items
is what a passing interest looks like, and the rules above apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RULES = ("auto", "time", "count", "log")


@dataclass(frozen=True)
class PersistenceConfig:
    # Defaults chosen by a sweep on the sample data (see docs/extraction.md, "Choosing the defaults").
    min_items: int = field(default=4, metadata={"help": "fewest distinct items in a journey"})
    min_span_days: float = field(default=7.0, metadata={"help": "fewest days from first to last event"})
    min_active_days: int = field(default=4, metadata={"help": "fewest distinct days with an event"})
    rule: str = field(
        default="auto",
        metadata={"help": "time: items, span and active days; count: distinct items only; log: distinct "
                  "items with the clustering's floor; auto: log for histories that record each item once, "
                  "else time for users whose history could show it, else count"},
    )

    count_min_items: int = field(
        default=5, metadata={"help": "fewest distinct items in a journey under the count rule"})
    count_min_returns: int = field(
        default=1, metadata={"help": "fewest returns (events on an item of the cluster seen before) in a journey "
                             "under the count rule"})
    log_min_items: int = field(
        default=3, metadata={"help": "fewest distinct items in a journey under the log rule (the clustering's "
                             "minimum cluster size unless set)"})
    log_max_returns: float = field(
        default=0.05, metadata={"help": "auto: a history whose share of events on an item seen before is at "
                                "most this is judged by the log rule (below 0: never)"})

    def __post_init__(self):
        if self.count_min_items < 1 or self.log_min_items < 1 or self.count_min_returns < 0:
            raise ValueError("count_min_items and log_min_items must be at least 1, count_min_returns at least 0")
        if not self.log_max_returns < 1:
            raise ValueError("log_max_returns must be below 1 (below 0 turns the log rule off)")
        if self.min_items < 1 or self.min_active_days < 1 or self.min_span_days < 0:
            raise ValueError("persistence thresholds must be >= 1 item, >= 0 days span, >= 1 active day")
        if self.rule not in RULES:
            raise ValueError(f"unknown persistence rule '{self.rule}': choose one of {', '.join(RULES)}")

    def rule_for(self, history_span_days: float, history_active_days: int, events: int | None = None,
                 items: int | None = None) -> str:
        """The rule that applies to a user whose whole history spans and covers these days, with
        ``events`` on ``items`` distinct items."""
        if self.rule != "auto":
            return self.rule
        if events and items is not None and 1 - items / events <= self.log_max_returns:
            return "log"
        timed = history_span_days >= self.min_span_days and history_active_days >= self.min_active_days
        return "time" if timed else "count"

    def failure(self, num_items: int, span_days: float, active_days: int, rule: str = "time",
                num_events: int | None = None) -> str | None:
        """Why a cluster is transient under ``rule`` ('time', 'count' or 'log'), or None for a journey."""
        reasons = []
        fewest = self.fewest_items(rule)
        if num_items < fewest:
            reasons.append(f"{num_items} items < {fewest}")
        if rule == "count" and num_events is not None and num_events - num_items < self.count_min_returns:
            reasons.append(f"{num_events - num_items} returns < {self.count_min_returns}")
        if rule == "time":
            if span_days < self.min_span_days:
                reasons.append(f"span {span_days:.1f} days < {self.min_span_days:g}")
            if active_days < self.min_active_days:
                reasons.append(f"{active_days} active days < {self.min_active_days}")
        return "; ".join(reasons) or None

    def fewest_items(self, rule: str) -> int:
        return {"time": self.min_items, "count": self.count_min_items, "log": self.log_min_items}[rule]

    def score(self, num_items: int, span_days: float, active_days: int, rule: str = "time") -> float:
        """0-1, for ranking: each factor saturates at four times its threshold (a month-long,
        12-day journey scores 1 with the defaults), and the score is their geometric mean. Under the
        count and log rules time says nothing, so only the item count scores."""
        fewest = self.fewest_items(rule)
        factors = [min(1.0, num_items / (4 * fewest))]
        if rule == "time":
            factors += [min(1.0, span_days / max(4 * self.min_span_days, 1e-9)),
                        min(1.0, active_days / (4 * self.min_active_days))]
        product = 1.0
        for factor in factors:
            product *= max(factor, 1e-6)
        return round(product ** (1 / len(factors)), 4)
