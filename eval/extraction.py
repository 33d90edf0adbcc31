"""How well extracted journeys recover planted ones: event-level ARI/NMI and journey matching.

Events are labelled by the journey that holds them; every event outside a persistent journey (in a
transient cluster, noise, or a planted transient interest) gets one "no journey" label per user.
So ARI and NMI measure the task itself: find the persistent interests, nothing else.
A planted persistent journey counts as found when some extracted journey of the same user matches
its events with Jaccard >= ``match_jaccard``; an extracted journey is precise when it matches one.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

MATCH_JACCARD = 0.5


def _jaccard(a: set, b: set) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def evaluate(journeys: Iterable[tuple[str, list[str]]], truth: pa.Table, match_jaccard: float = MATCH_JACCARD) -> dict:
    """``journeys``: (user_id, item_ids) per extracted persistent journey; ``truth``: the sample's
    truth table (one row per event)."""
    columns = truth.select(["user_id", "item_id", "planted_id", "kind"]).to_pydict()
    n_events = len(columns["user_id"])
    events_of_user_item: dict[tuple[str, str], list[int]] = defaultdict(list)
    planted_events: dict[str, set[int]] = defaultdict(set)
    planted_kind: dict[str, str] = {}
    planted_user: dict[str, str] = {}
    for index in range(n_events):
        user, item, planted, kind = (columns[c][index] for c in ("user_id", "item_id", "planted_id", "kind"))
        events_of_user_item[(user, item)].append(index)
        if planted is not None:
            planted_events[planted].add(index)
            planted_kind[planted] = kind
            planted_user[planted] = user

    predicted = [f"{u}/none" for u in columns["user_id"]]
    extracted_by_user: dict[str, list[set[int]]] = defaultdict(list)
    for number, (user, item_ids) in enumerate(journeys):
        members = {i for item in item_ids for i in events_of_user_item.get((user, item), ())}
        for i in members:
            predicted[i] = f"extracted/{number}"
        extracted_by_user[user].append(members)

    expected = [
        planted if kind == "persistent" else f"{user}/none"
        for user, planted, kind in zip(columns["user_id"], columns["planted_id"], columns["kind"])
    ]

    def best_match(planted: str) -> float:
        candidates = extracted_by_user.get(planted_user[planted], [])
        return max((_jaccard(planted_events[planted], j) for j in candidates), default=0.0)

    persistent = [p for p, k in planted_kind.items() if k == "persistent"]
    transient = [p for p, k in planted_kind.items() if k == "transient"]
    found = sum(best_match(p) >= match_jaccard for p in persistent)
    transient_reported = sum(best_match(p) >= match_jaccard for p in transient)

    persistent_by_user: dict[str, list[set[int]]] = defaultdict(list)
    for p in persistent:
        persistent_by_user[planted_user[p]].append(planted_events[p])
    extracted_total = sum(len(v) for v in extracted_by_user.values())
    precise = sum(
        any(_jaccard(j, p) >= match_jaccard for p in persistent_by_user.get(user, []))
        for user, extracted in extracted_by_user.items()
        for j in extracted
    )
    users = sorted(set(columns["user_id"]))
    per_user = Counter({u: len(extracted_by_user.get(u, [])) for u in users})
    planted_per_user = Counter(planted_user[p] for p in persistent)
    return {
        "events": n_events,
        "users": len(users),
        "ari": round(adjusted_rand_score(expected, predicted), 4) if n_events else None,
        "nmi": round(normalized_mutual_info_score(expected, predicted), 4) if n_events else None,
        "planted_journeys": len(persistent),
        "extracted_journeys": extracted_total,
        "journey_recall": round(found / len(persistent), 4) if persistent else None,
        "journey_precision": round(precise / extracted_total, 4) if extracted_total else None,
        "planted_transient": len(transient),
        "transient_reported_as_journeys": transient_reported,
        "journeys_per_user": round(extracted_total / len(users), 3) if users else None,
        "planted_journeys_per_user": round(len(persistent) / len(users), 3) if users else None,
        "journeys_per_user_histogram": {str(k): v for k, v in sorted(Counter(per_user.values()).items())},
        "planted_per_user_histogram": {
            str(k): v for k, v in sorted(Counter(planted_per_user.get(u, 0) for u in users).items())
        },
        "match_jaccard": match_jaccard,
    }


# ---- reference groups without ground-truth clusters -------------------------------------------

def _fold(text: str) -> str:
    """Case-folded, every run of non-word characters one space: how tags and names are compared."""
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def tag_groups(tag_rows: Iterable[dict], histories: dict[str, set[str]], min_items: int = 3) -> dict:
    """(user, normalised tag) -> the items of that user's history the user gave that tag, kept when
    there are at least ``min_items``. Tags are folded like the naming reference set's ("Sci-Fi" and
    "sci fi" are one group); a tagged item the user never interacted with cannot be in a journey, so
    it does not count."""
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in tag_rows:
        user, item = str(row["user_id"]), str(row["item_id"])
        key = _fold(row["tag"] or "")
        if key and item in histories.get(user, ()):
            groups[(user, key)].add(item)
    return {k: v for k, v in sorted(groups.items()) if len(v) >= min_items}


def _group_scores(groups: dict, journeys_of_user: dict[str, list[set[str]]], match_jaccard: float) -> dict:
    best = [max((_jaccard(items, j) for j in journeys_of_user.get(user, [])), default=0.0)
            for (user, _), items in groups.items()]
    return {
        "group_recall": round(sum(b >= match_jaccard for b in best) / len(best), 4) if best else None,
        "mean_best_jaccard": round(float(np.mean(best)), 4) if best else None,
    }


def _shares(histories: dict[str, set[str]], journeys_of_user: dict[str, list[set[str]]], min_items: int) -> dict:
    """Largest journey's share of the user's distinct items, for users with ``min_items``+ items."""
    shares = [max((len(j) for j in journeys_of_user.get(u, [])), default=0) / len(items)
              for u, items in histories.items() if len(items) >= min_items]
    if not shares:
        return {"users": 0}
    return {"users": len(shares), "median": round(float(np.median(shares)), 4),
            "p90": round(float(np.percentile(shares, 90)), 4), "mean": round(float(np.mean(shares)), 4)}


def best_partition(groups: dict) -> dict[str, list[set[str]]]:
    """Per user, a greedy disjoint partition of the items of their own reference groups: take the
    group with the most items not yet assigned (ties: the tag that sorts first), make its unassigned
    items a journey, repeat while any group has one. Extracted journeys are disjoint, so where a
    user's groups overlap no extraction can recover all of them; this is roughly the best one can."""
    tags_of: dict[str, dict[str, set[str]]] = defaultdict(dict)
    for (user, tag), items in groups.items():
        tags_of[user][tag] = set(items)
    partition: dict[str, list[set[str]]] = {}
    for user, groups_of_user in tags_of.items():
        assigned: set[str] = set()
        journeys = []
        while True:
            tag = min(groups_of_user, key=lambda t: (-len(groups_of_user[t] - assigned), t))
            new = groups_of_user[tag] - assigned
            if not new:
                break
            journeys.append(new)
            assigned |= new
        partition[user] = journeys
    return partition


def name_contains_tag(named: Iterable[tuple[str, list[str], str]], groups: dict,
                      match_jaccard: float = MATCH_JACCARD, examples: int = 5) -> dict:
    """Whether naming says what a recovered group is: for each reference group whose user's
    best-matching journey has Jaccard >= ``match_jaccard``, does that journey's name contain the tag
    as whole words (both folded as ``tag_groups`` folds tags)? ``named``: (user_id, item_ids, name)
    per named journey. A name can describe the group well in other words, so this is a floor."""
    journeys_of: dict[str, list[tuple[set[str], str]]] = defaultdict(list)
    for user, item_ids, name in named:
        journeys_of[str(user)].append((set(item_ids), name or ""))
    pairs = []
    for (user, tag), items in groups.items():
        candidates = journeys_of.get(user, [])
        if not candidates:
            continue
        journey, name = max(candidates, key=lambda c: _jaccard(items, c[0]))  # the first of equals
        if _jaccard(items, journey) >= match_jaccard:
            pairs.append((tag, name, f" {_fold(tag)} " in f" {_fold(name)} "))
    return {
        "matched_groups": len(pairs),
        "name_contains_tag": round(sum(hit for _, _, hit in pairs) / len(pairs), 4) if pairs else None,
        "examples": [[tag, name] for tag, name, _ in pairs[:examples]],
    }


def evaluate_groups(journeys: Iterable[tuple[str, list[str]]], groups: dict, histories: dict[str, set[str]],
                    item_tags: dict[str, Iterable[str]], match_jaccard: float = MATCH_JACCARD,
                    heavy_user_items: int = 100) -> dict:
    """Score extracted journeys against reference item groups (e.g. a user's own tags), beside three
    baselines computed on the same histories: each user's whole history as one journey, one journey
    per item tag or genre (overlapping: an item with three genres is in three), and the best
    partition (``best_partition``: built from the groups themselves, a rough ceiling for disjoint
    journeys, not a method).

    A reference group is recovered when some journey of its user matches its items with Jaccard >=
    ``match_jaccard``. The largest-journey share says whether extraction split a history at all."""
    extracted: dict[str, list[set[str]]] = defaultdict(list)
    for user, item_ids in journeys:
        extracted[str(user)].append(set(item_ids))
    whole = {u: [set(items)] for u, items in histories.items() if items}
    per_tag: dict[str, list[set[str]]] = {}
    for user, items in histories.items():
        by_tag: dict[str, set[str]] = defaultdict(set)
        for item in items:
            for tag in item_tags.get(item, ()):
                by_tag[tag].add(item)
        per_tag[user] = [by_tag[t] for t in sorted(by_tag)]

    def describe(journeys_of_user):
        counts = [len(journeys_of_user.get(u, [])) for u in histories]
        return {
            **_group_scores(groups, journeys_of_user, match_jaccard),
            "journeys": sum(counts),
            "journeys_per_user": round(sum(counts) / len(counts), 3) if counts else None,
            "users_without_journeys": sum(c == 0 for c in counts),
            f"largest_journey_share_users_{heavy_user_items}_plus_items": _shares(
                histories, journeys_of_user, heavy_user_items),
        }

    return {
        "users": len(histories),
        "reference_groups": len(groups),
        "users_with_groups": len({u for u, _ in groups}),
        "match_jaccard": match_jaccard,
        "extracted": describe(extracted),
        "baseline_whole_history": describe(whole),
        "baseline_one_per_tag": describe(per_tag),
        "baseline_best_partition": describe(best_partition(groups)),
    }
