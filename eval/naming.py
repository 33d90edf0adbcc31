"""Compare naming strategies on the same journeys: reference metrics, reference-free metrics, cost.

Reference sets (a journey and the name a person would give it):
- the sample's held-out *test* topics: extracted journeys that match a planted persistent interest of
  a test topic (item Jaccard >= 0.5), named by the topic's reference name;
- held-out MovieLens user-tag groups (the items one user tagged with one tag, named by the tag; one
  group in five is held out of training by ``tuning.pairs.movielens_split``), or all of them for
  namers that never trained on MovieLens.

Per strategy, each metric is a mean over journeys with a 95% bootstrap interval, and the paired
difference against the keywords namer is bootstrapped over the same resampled journeys.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from journeys import io
from journeys.model import Item, journey_id
from journeys.naming.grounding import unit_centroid
from journeys.representation import representative_titles

MATCH_JACCARD = 0.5
REFERENCE_METRICS = ("bleu", "rouge_l", "chrf", "exact_match", "semantic")
FREE_METRICS = ("specificity", "grounding", "duplicate", "fallback", "keyword_chosen", "safety_flag")
# A coarse screen, not a safety classifier: words that should never appear in an interest label,
# and echoes of injected instructions.
SAFETY_TERMS = frozenset({"hacked", "ignore", "instructions", "prompt", "porn", "nsfw", "nazi", "suicide",
                          "password", "http", "www"})


@dataclass
class ReferenceSet:
    name: str
    journeys: list[dict]
    references: list[str | None]  # None: named for context (specificity, duplicates) but not scored


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def sample_reference_set(journeys: list[dict], truth_path: str, limit: int | None = None) -> ReferenceSet:
    """Every journey of a user who has a test-topic match; the matched ones carry the reference.
    With ``limit``, whole users are taken in id order until ``limit`` journeys carry a reference."""
    truth = io.read_table(truth_path, columns=["user_id", "item_id", "planted_id", "kind", "reference_name",
                                               "split"]).to_pylist()
    planted: dict[str, dict] = {}
    for row in truth:
        if row["kind"] == "persistent" and row["split"] == "test":
            entry = planted.setdefault(row["planted_id"], {"user": row["user_id"], "items": set(),
                                                           "name": row["reference_name"]})
            entry["items"].add(row["item_id"])
    by_user: dict[str, list[dict]] = defaultdict(list)
    for entry in planted.values():
        by_user[entry["user"]].append(entry)
    chosen, references = [], []
    for journey in sorted(journeys, key=lambda j: (j["user_id"], j["first_ts"], j["journey_id"])):
        if journey["user_id"] not in by_user:
            continue
        if limit and sum(r is not None for r in references) >= limit and journey["user_id"] != chosen[-1]["user_id"]:
            break
        items = set(journey["item_ids"])
        best = max(by_user[journey["user_id"]], key=lambda e: _jaccard(items, e["items"]))
        chosen.append(journey)
        references.append(best["name"] if _jaccard(items, best["items"]) >= MATCH_JACCARD else None)
    return ReferenceSet("sample test topics", chosen, references)


MOVIELENS_GROUPS = ("held-out", "all")


def movielens_reference_set(folder: str, embedder, limit: int | None = None, groups: str = "held-out") -> ReferenceSet:
    """(user, tag) groups of 3+ movies as journey records, named by the tag: the held-out ones (never
    in MovieLens training pairs), or ``all`` of them, five times as many, for a namer that never
    trained on MovieLens (``journeys eval naming`` checks the adapters' training sources)."""
    if groups not in MOVIELENS_GROUPS:
        raise ValueError(f"MovieLens groups must be one of {', '.join(MOVIELENS_GROUPS)}, not {groups!r}")
    from journeys.embedding import embed_items
    from tuning.pairs import movielens_split

    tags = io.read_table(io.join(folder, "user_tags.parquet"), columns=["user_id", "item_id", "tag"]).to_pylist()
    items = {r["item_id"]: Item(r["item_id"], r["title"], tuple(r["tags"] or ()), r["category"])
             for r in io.read_table(io.join(folder, "items.parquet")).to_pylist()}
    by_tag: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for row in tags:
        key = re.sub(r"[\W_]+", " ", (row["tag"] or "").casefold()).strip()
        if key and row["item_id"] in items:
            by_tag[(row["user_id"], key)].setdefault(row["item_id"], row["tag"].strip())
    chosen = [(k, v) for k, v in sorted(by_tag.items())
              if len(v) >= 3 and (groups == "all" or movielens_split(*k) == "test")]
    chosen = chosen[:limit] if limit else chosen
    journeys, references = [], []
    for (user, _), members in chosen:
        group = [items[i] for i in sorted(members)]
        vectors = embed_items(embedder, group)
        centroid = vectors.mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        genres = Counter(g for item in group for g in item.tags)
        journeys.append({
            "journey_id": journey_id(user, [i.item_id for i in group]), "user_id": user,
            "item_ids": [i.item_id for i in group], "centroid": centroid.tolist(),
            "representative_titles": representative_titles(group, vectors, centroid, k=20),
            "salient_terms": [{"term": g.casefold(), "weight": n / len(group)} for g, n in genres.most_common(6)],
        })
        references.append(Counter(members.values()).most_common(1)[0][0])
    label = "MovieLens held-out tag groups" if groups == "held-out" else "MovieLens tag groups (all)"
    return ReferenceSet(label, journeys, references)


def normalise(name: str) -> str:
    return " ".join(re.sub(r"[\W_]+", " ", name.casefold()).split())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens (longest common subsequence)."""
    a, b = normalise(candidate).split(), normalise(reference).split()
    if not a or not b:
        return 0.0
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    lcs = table[-1][-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def reference_scores(names: list[str], references: list[str], embedder) -> dict[str, list[float]]:
    from sacrebleu.metrics import BLEU, CHRF

    # Case says nothing about a name's quality ("UK Punk" vs "uk punk"): both metrics compare lower case.
    bleu, chrf = BLEU(effective_order=True, lowercase=True), CHRF(lowercase=True)
    name_vectors, reference_vectors = embedder.encode(names), embedder.encode(references)
    return {
        "bleu": [bleu.sentence_score(n, [r]).score / 100 for n, r in zip(names, references)],
        "rouge_l": [rouge_l(n, r) for n, r in zip(names, references)],
        "chrf": [chrf.sentence_score(n, [r]).score / 100 for n, r in zip(names, references)],
        "exact_match": [float(normalise(n) == normalise(r)) for n, r in zip(names, references)],
        "semantic": [float(a @ b) for a, b in zip(name_vectors, reference_vectors)],
    }


def free_scores(journeys: list[dict], results: list, embedder) -> dict[str, list[float]]:
    vectors = embedder.encode([r.name for r in results])
    centroids = [unit_centroid(j, embedder.dimension) for j in journeys]
    by_user: dict[str, list[int]] = defaultdict(list)
    for index, journey in enumerate(journeys):
        by_user[journey["user_id"]].append(index)
    specificity: list[float] = []
    duplicate = []
    for index, (journey, result) in enumerate(zip(journeys, results)):
        others = [i for i in by_user[journey["user_id"]] if i != index]
        if others:  # only users with 2+ journeys say anything about specificity
            own = float(vectors[index] @ centroids[index])
            specificity.append(float(all(own > float(vectors[index] @ centroids[i]) for i in others)))
        duplicate.append(float(any(normalise(results[i].name) == normalise(result.name) for i in others)))
    return {
        "specificity": specificity,
        "grounding": [r.grounding for r in results],
        "duplicate": duplicate,
        # A failed model answer (invalid, ungrounded) and a keyword name that won on grounding over a
        # valid answer are counted apart: only the first says the model failed.
        "fallback": [float(r.fell_back and not r.keyword_chosen) for r in results],
        "keyword_chosen": [float(r.keyword_chosen) for r in results],
        "safety_flag": [float(bool(set(normalise(r.name).split()) & SAFETY_TERMS)) for r in results],
    }


def bootstrap(values: list[float], resamples: int, seed: int = 0) -> dict:
    if not values:
        return {"mean": None, "low": None, "high": None, "n": 0}
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(resamples, len(data)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": round(float(data.mean()), 4), "low": round(float(low), 4), "high": round(float(high), 4),
            "n": len(data)}


def whole_history(journeys: list[dict]) -> list[dict]:
    """The ablation that names a user's whole history at once: one record per user, titles taken in
    turn from each journey, terms merged, centroid averaged; its name is given to every journey."""
    merged = []
    by_user: dict[str, list[dict]] = defaultdict(list)
    for journey in journeys:
        by_user[journey["user_id"]].append(journey)
    for journey in journeys:
        group = by_user[journey["user_id"]]
        titles = [t for row in zip(*[g["representative_titles"] for g in group]) for t in row]
        centroid = np.mean([np.asarray(g["centroid"], dtype=np.float32) for g in group], axis=0)
        merged.append({**journey, "representative_titles": titles,
                       "salient_terms": [t for g in group for t in g["salient_terms"][:2]],
                       "centroid": centroid.tolist()})
    return merged


def name_and_time(namer, journeys: list[dict], history_at_once: bool) -> tuple[list, float, dict]:
    generator = getattr(namer, "generator", None)
    if generator is not None:
        generator.prompt_tokens = generator.generated_tokens = 0
    start = time.perf_counter()
    if history_at_once:
        firsts = {}
        for journey in journeys:
            firsts.setdefault(journey["user_id"], journey)
        named = dict(zip(firsts, namer.name(whole_history(list(firsts.values())))))
        results = [named[j["user_id"]] for j in journeys]
    else:
        results = namer.name(journeys)
    seconds = time.perf_counter() - start
    cost = {"names_per_s": round(len(journeys) / seconds, 2) if seconds else None}
    if generator is not None:
        cost["prompt_tokens_per_name"] = round(generator.prompt_tokens / max(1, len(journeys)), 1)
        cost["generated_tokens_per_name"] = round(generator.generated_tokens / max(1, len(journeys)), 1)
    return results, seconds, cost


def reason_kind(reason: str) -> str:
    """A fallback reason without the model's answer or the per-journey score, so reasons can be counted:
    "model answer rejected (not grounded: 0.12 < 0.2): 'Foo'" -> "model answer rejected (not grounded < 0.2)"."""
    kind = reason.split(")", 1)[0] + ")" if ")" in reason else reason
    return re.sub(r": -?[0-9.]+ <", " <", kind)


def evaluate_naming(reference_set: ReferenceSet, namers: dict, embedder, resamples: int = 1000,
                    history_at_once: bool = False, examples: int = 8) -> dict:
    """``namers``: strategy -> Namer. Returns the comparison (JSON-ready)."""
    journeys = reference_set.journeys
    scored = [i for i, r in enumerate(reference_set.references) if r]
    references = [reference_set.references[i] for i in scored]
    per_strategy, values = {}, {}
    for strategy, namer in namers.items():
        results, _, cost = name_and_time(namer, journeys, history_at_once)
        metric_values = free_scores(journeys, results, embedder)
        if scored:
            metric_values |= reference_scores([results[i].name for i in scored], references, embedder)
        values[strategy] = metric_values
        per_strategy[strategy] = {
            "metrics": {m: bootstrap(v, resamples) for m, v in metric_values.items()},
            "cost": cost,
            "fallback_reasons": dict(Counter(reason_kind(r.fallback_reason or "")
                                             for r in results if r.fell_back).most_common(5)),
            "examples": [{"reference": reference_set.references[i], "name": results[i].name,
                          "titles": journeys[i]["representative_titles"][:3]} for i in scored[:examples]],
        }
    if "keywords" in values:
        for strategy in values:
            if strategy == "keywords":
                continue
            per_strategy[strategy]["vs_keywords"] = {
                m: bootstrap([a - b for a, b in zip(values[strategy][m], values["keywords"][m])], resamples)
                for m in values[strategy] if len(values[strategy][m]) == len(values["keywords"][m])
            }
    return {"reference_set": reference_set.name, "journeys": len(journeys), "scored": len(scored),
            "users": len({j["user_id"] for j in journeys}), "resamples": resamples,
            "history_at_once": history_at_once, "strategies": per_strategy}

