"""Journey identity across runs: match one user's new journeys to that user's previous journeys.

A run with a previous run to build on clusters the whole history afresh (the clustering knows
nothing of earlier runs) and then, per user, matches each new journey one-to-one to a previous one:

* a pair is a candidate when the two share at least ``min_overlap`` of the smaller journey's items
  (the overlap coefficient, so a journey that grew keeps a full score) and their centroids have a
  cosine of at least ``min_similarity``;
* candidates are taken greedily, the most alike first: by the Jaccard index of the item sets, then
  by centroid cosine, then by previous id and new journey's own id, so the result does not depend
  on input order;
* a matched journey keeps the previous ``journey_id`` and first-seen time, and its ``version`` goes
  up by one when its items changed;
* an unmatched new journey gets a fresh id (the usual hash of user and items); if it was a candidate
  of a previous journey that matched another one, it split off that journey;
* an unmatched previous journey has ended; if it was a candidate of a new journey that matched
  another previous one, it merged into that journey.

Every new journey has exactly one lineage row with relation ``continued``, ``split`` or ``new``;
every previous journey exactly one with ``continued``, ``merged`` or ``ended``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from journeys.model import journey_id

CONTINUED, SPLIT, NEW, MERGED, ENDED = "continued", "split", "new", "merged", "ended"
RELATIONS = (CONTINUED, SPLIT, NEW, MERGED, ENDED)


@dataclass(frozen=True)
class MatchConfig:
    min_overlap: float = 0.5  # share of the smaller journey's items that the other one holds
    min_similarity: float = 0.5  # cosine between the two centroids

    def __post_init__(self):
        if not 0 < self.min_overlap <= 1:
            raise ValueError("min_overlap must be in (0, 1]")
        if not -1 <= self.min_similarity <= 1:
            raise ValueError("min_similarity must be in [-1, 1]")


@dataclass(frozen=True)
class Candidate:
    previous: int  # index into the previous journeys
    current: int  # index into the new journeys
    overlap: float
    jaccard: float
    similarity: float


def _cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"centroids of {a.shape[0]} and {b.shape[0]} dimensions cannot be compared: "
                         "the previous run used another embedding model")
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else 0.0


def candidates(previous: list[dict], current: list[dict], config: MatchConfig) -> list[Candidate]:
    """Every (previous, new) pair that passes both thresholds, the most alike first."""
    found = []
    for p, old in enumerate(previous):
        old_items = set(old["item_ids"])
        for c, new in enumerate(current):
            new_items = set(new["item_ids"])
            shared = len(old_items & new_items)
            smaller = min(len(old_items), len(new_items))
            if not shared or not smaller:
                continue
            overlap = shared / smaller
            if overlap < config.min_overlap:
                continue
            similarity = _cosine(old["centroid"], new["centroid"])
            if similarity < config.min_similarity:
                continue
            found.append(Candidate(p, c, overlap, shared / len(old_items | new_items), similarity))
    found.sort(key=lambda k: (-k.jaccard, -k.similarity, previous[k.previous]["journey_id"],
                              current[k.current]["journey_id"]))
    return found


def _fresh_id(user_id: str, item_ids: list[str], taken: set[str]) -> str:
    """The usual hash id, unless a previous journey already holds it (possible only when a split-off
    journey has exactly a previous journey's items); then a salted variant, still deterministic."""
    candidate, salt = journey_id(user_id, item_ids), 0
    while candidate in taken:
        salt += 1
        payload = f"{candidate}\x1f{salt}"
        candidate = "j-" + hashlib.sha1(payload.encode()).hexdigest()[:16]
    return candidate


def assign_identity(user_id: str, previous: list[dict], current: list[dict], config: MatchConfig,
                    run_time: int) -> tuple[list[dict], list[dict]]:
    """One user's new journeys with their identity (``journey_id``, ``first_seen``, ``version``), and
    the lineage rows linking them to the previous journeys.

    ``previous``: the user's journeys from the previous run (``journey_id``, ``item_ids``,
    ``centroid``, ``first_seen`` and ``version``, times in microseconds). ``current``: the new
    journeys as extraction made them (their ``journey_id`` is the hash of their items). ``run_time``
    (microseconds) is written on every lineage row.
    """
    previous = sorted(previous, key=lambda j: j["journey_id"])
    current = sorted(current, key=lambda j: (j["first_ts"], j["journey_id"]))
    pairs = candidates(previous, current, config)
    match_of_current: dict[int, int] = {}
    matched_previous: set[int] = set()
    for pair in pairs:
        if pair.current not in match_of_current and pair.previous not in matched_previous:
            match_of_current[pair.current] = pair.previous
            matched_previous.add(pair.previous)

    taken = {j["journey_id"] for j in previous}
    out, lineage = [], []

    def row(old: str | None, new: str | None, relation: str) -> dict:
        return {"user_id": user_id, "old_id": old, "new_id": new, "relation": relation, "run_time": run_time}

    new_ids: list[str] = []
    for c, new in enumerate(current):
        record = dict(new)
        if c in match_of_current:
            old = previous[match_of_current[c]]
            changed = set(old["item_ids"]) != set(new["item_ids"])
            record |= {"journey_id": old["journey_id"], "first_seen": min(old["first_seen"], new["first_ts"]),
                       "version": old["version"] + int(changed)}
            lineage.append(row(old["journey_id"], old["journey_id"], CONTINUED))
        else:
            fresh = _fresh_id(user_id, new["item_ids"], taken)
            taken.add(fresh)
            record |= {"journey_id": fresh, "first_seen": new["first_ts"], "version": 1}
            source = next((k.previous for k in pairs if k.current == c), None)  # the most alike first
            lineage.append(row(None if source is None else previous[source]["journey_id"], fresh,
                               NEW if source is None else SPLIT))
        new_ids.append(record["journey_id"])
        out.append(record)

    for p, old in enumerate(previous):
        if p in matched_previous:
            continue
        target = next((k.current for k in pairs if k.previous == p), None)
        lineage.append(row(old["journey_id"], None if target is None else new_ids[target],
                           ENDED if target is None else MERGED))
    return out, lineage


# ---- naming: carry a continuing journey's previous name over, or name it afresh -----------------

NEW_STATUS, CONTINUING, CHANGED, ENDED_STATUS = "new", "continuing", "changed", "ended"
STATUSES = (NEW_STATUS, CONTINUING, CHANGED, ENDED_STATUS)


@dataclass(frozen=True)
class CarryConfig:
    max_new_share: float = 0.5  # a journey with a larger share of items it did not have is renamed
    min_grounding: float = 0.3  # so is one whose previous name fits its new centroid less than this

    def __post_init__(self):
        if not 0 <= self.max_new_share <= 1:
            raise ValueError("max_new_share must be in [0, 1]")


def new_item_share(journey: dict, previous: dict) -> float:
    """Share of the journey's items that its previous version did not have."""
    items = set(journey["item_ids"])
    return len(items - set(previous["item_ids"])) / len(items) if items else 0.0


def needs_naming(journey: dict, previous: dict | None, strategy: str, config: CarryConfig,
                 previous_run: bool = True) -> tuple[bool, str, str]:
    """Before grounding is known: (must it be named afresh, status, reason). ``previous`` is the
    previous run's named record with the same journey_id, if any; ``previous_run`` whether there was
    a previous run at all (without one every journey is new to the name step)."""
    if not previous_run:
        return True, NEW_STATUS, "no previous run"
    if previous is None:
        if journey.get("version", 1) == 1:
            return True, NEW_STATUS, "new journey"
        return True, CHANGED, "no previous name"
    if previous["naming_strategy"] != strategy:
        return True, CHANGED, f"namer changed ({previous['naming_strategy']} -> {strategy})"
    share = new_item_share(journey, previous)
    if share > config.max_new_share:
        return True, CHANGED, f"new items {share:.2f} > {config.max_new_share:.2f}"
    return False, CONTINUING, f"new items {share:.2f} <= {config.max_new_share:.2f}"


def carry_or_rename(grounding: float, reason: str, config: CarryConfig) -> tuple[bool, str, str]:
    """With the previous name's grounding on the new centroid: (carried, status, reason)."""
    if grounding < config.min_grounding:
        return False, CHANGED, f"previous name's grounding {grounding:.2f} < {config.min_grounding:.2f}"
    return True, CONTINUING, f"{reason}, grounding {grounding:.2f} >= {config.min_grounding:.2f}"
