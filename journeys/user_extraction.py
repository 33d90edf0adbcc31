"""Everything that happens to one user's history: dedupe, cluster, filter, describe.

Plain Python on in-memory data: the Beam pipeline calls it per user, and so can a notebook or a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from journeys.extraction import NOISE, Extractor
from journeys.item_space import ItemSpace, sessions_of
from journeys.model import MICROS_PER_DAY, Event, Item, day_of, journey_id
from journeys.persistence import PersistenceConfig
from journeys.representation import representative_titles, salient_terms
from journeys.validation import DeadLetter


@dataclass(frozen=True)
class ExtractionSettings:
    extractor: Extractor
    persistence: PersistenceConfig
    strategy: str
    embedding_model: str
    top_terms: int = 10
    top_titles: int = 20  # namers take the first few; the naming ablations go up to 20
    # Clusters the histories judged by the log rule (finer: see PersistenceConfig); None: ``extractor``.
    log_extractor: Extractor | None = None


@dataclass
class UserResult:
    journeys: list[dict] = field(default_factory=list)
    transient: list[dict] = field(default_factory=list)
    noise_events: int = 0
    events_in_journeys: int = 0
    events_in_transient: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    user: dict | None = None  # the users/ row: what the history was, which rule judged it, outcome


def _outcome(result: UserResult) -> str:
    """Why a user has the journeys they have: every user is accounted for, with or without any."""
    if result.journeys:
        return "journeys"
    if result.transient:
        return "only_transient"  # clusters were found, none passed the persistence filter
    return "no_cluster"  # no group of similar items large enough to be a cluster


def dedupe_events(events: list[Event]) -> tuple[list[Event], list[DeadLetter]]:
    """Time-ordered events with exact repeats (same item, time and type) dead-lettered."""
    ordered = sorted(events, key=lambda e: (e.ts, e.item_id, e.event_type or "", e.weight))
    kept: list[Event] = []
    duplicates: list[DeadLetter] = []
    seen: set[tuple] = set()
    for event in ordered:
        key = (event.item_id, event.ts, event.event_type)
        if key in seen:
            duplicates.append(
                DeadLetter(
                    "events", "duplicate_event", "same user, item, timestamp and event type as an "
                    "earlier row", event._asdict(), event.user_id, event.item_id,
                )
            )
            continue
        seen.add(key)
        kept.append(event)
    return kept, duplicates


def extract_user(
    user_id: str,
    events: list[Event],
    catalogue: dict[str, tuple[Item, np.ndarray]],
    settings: ExtractionSettings,
    catalogue_df: dict[str, int],
    catalogue_size: int,
    item_space: ItemSpace | None = None,
) -> UserResult:
    """Cluster one user's events into journeys and transient clusters.

    ``events`` must all refer to items in ``catalogue`` (unknown items are dead-lettered earlier).
    Items are clustered on ``item_space``'s rows (the chosen blocks, each centred by its catalogue
    statistics: see ``journeys.item_space``; without it, on the text vectors as they are); centroids
    and representative titles stay in the text encoder's own space, where names and other texts are
    embedded.
    """
    events, duplicates = dedupe_events(events)
    result = UserResult(dead_letters=duplicates)
    if not events:
        return result

    item_order: dict[str, int] = {}  # distinct items in order of first interaction
    for event in events:
        item_order.setdefault(event.item_id, len(item_order))
    item_ids = list(item_order)
    items = [catalogue[i][0] for i in item_ids]
    vectors = np.stack([catalogue[i][1] for i in item_ids]).astype(np.float32)
    events_of_item: list[list[Event]] = [[] for _ in item_ids]
    for event in events:
        events_of_item[item_order[event.item_id]].append(event)
    visits = np.array([len(e) for e in events_of_item], dtype=np.float64)

    times = [e.ts for e in events]
    history_span = (max(times) - min(times)) / MICROS_PER_DAY
    history_days = len({day_of(t) for t in times})
    rule = settings.persistence.rule_for(history_span, history_days, len(events), len(item_ids))

    space = item_space or ItemSpace(text_mean=None)
    logged = rule == "log"
    sessions = sessions_of([e[0].ts for e in events_of_item]) if logged else None
    extractor = settings.log_extractor if logged and settings.log_extractor else settings.extractor
    labels = extractor.cluster(space.vectors(items, vectors, [it.embedding for it in items], sessions), visits)
    result.noise_events = int(visits[labels == NOISE].sum())
    n_clusters = int(labels.max()) + 1 if len(labels) else 0
    members = [np.flatnonzero(labels == c) for c in range(n_clusters)]
    result.user = {
        "user_id": user_id, "num_events": len(events), "num_items": len(item_ids),
        "active_days": history_days, "span_days": round(history_span, 3), "persistence_rule": rule,
    }
    if not members:
        return _finish(result)

    # c-TF-IDF contrasts each cluster with the user's other clusters and the unclustered rest.
    groups = [[items[i] for i in m] for m in members]
    noise_items = [items[i] for i in np.flatnonzero(labels == NOISE)]
    terms = salient_terms(groups + ([noise_items] if noise_items else []), catalogue_df,
                          catalogue_size, settings.top_terms)

    for cluster, index in enumerate(members):
        record = _describe(user_id, [items[i] for i in index], vectors[index],
                           [e for i in index for e in events_of_item[i]], terms[cluster], settings, rule)
        failure = settings.persistence.failure(record["num_items"], record["span_days"], record["active_days"],
                                               rule, record["num_events"])
        if failure is None:
            result.journeys.append(record)
            result.events_in_journeys += record["num_events"]
        else:
            result.transient.append({**record, "reason": failure})
            result.events_in_transient += record["num_events"]
    result.journeys.sort(key=lambda r: (r["first_ts"], r["journey_id"]))
    result.transient.sort(key=lambda r: (r["first_ts"], r["journey_id"]))
    return _finish(result)


def _finish(result: UserResult) -> UserResult:
    result.user |= {"journeys": len(result.journeys), "transient_clusters": len(result.transient),
                    "noise_events": result.noise_events, "outcome": _outcome(result)}
    return result


def _describe(user_id, items: list[Item], vectors: np.ndarray, events: list[Event], terms, settings,
              rule: str) -> dict:
    centroid = vectors.mean(axis=0)
    norm = np.linalg.norm(centroid)
    centroid = centroid / norm if norm else centroid
    times = [e.ts for e in events]
    first, last = min(times), max(times)
    span_days = (last - first) / MICROS_PER_DAY
    active_days = len({day_of(t) for t in times})
    ids = [it.item_id for it in items]
    return {
        "journey_id": journey_id(user_id, ids),
        "user_id": user_id,
        "item_ids": ids,
        "first_ts": first,
        "last_ts": last,
        "num_events": len(events),
        "num_items": len(items),
        "active_days": active_days,
        "span_days": round(span_days, 3),
        "salient_terms": [{"term": t, "weight": w} for t, w in terms],
        "representative_titles": representative_titles(items, vectors, centroid, settings.top_titles),
        "centroid": centroid.astype(np.float32).tolist(),
        "persistence": settings.persistence.score(len(items), span_days, active_days, rule),
        "strategy": settings.strategy,
        "embedding_model": settings.embedding_model,
    }
