"""Quality sweep of the extraction settings on the synthetic sample, without Beam.

Generates the built-in sample (``--users``, ``--seed``), validates its rows, embeds every catalogue
item once (the vectors are cached in an .npy file under ``--cache-dir``, so a rerun embeds nothing),
then, for each configuration in ``SWEEP`` below, runs ``extract_user`` on every user in memory (as
the pipeline does per user) and scores the journeys against the sample's truth with
``eval.extraction.evaluate``. Prints one Markdown table row per configuration: ARI, NMI, journey
recall and precision, planted transient interests reported as journeys, and journeys per user.

Run from the repository root:

    python benchmarks/sweep_extraction.py                 # the default sample: 200 users, seed 0
    python benchmarks/sweep_extraction.py --domain film_tv   # one domain: sub-interests of films and TV
    python benchmarks/sweep_extraction.py --timestamps bursty  # histories logged in 1-3 sessions
    python benchmarks/sweep_extraction.py --users 20      # a quick look

Edit ``SWEEP`` to try other settings.
"""

from __future__ import annotations

import os

# Before anything heavy is imported: no hub calls (the default model is packaged) and no progress bars.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import hashlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple


class Setting(NamedTuple):
    label: str
    strategy: str  # "icpc" or "hdbscan"
    params: dict  # extractor parameters; anything left out keeps its default
    persistence: tuple | None = None  # PersistenceConfig's fields in order; None: the defaults
    centring: str = "mean"  # "mean" (the default) or "none"


# The configurations, one table row each. Edit freely.
SWEEP: list[Setting] = [
    Setting("icpc threshold 0.30", "icpc", {"threshold": 0.30, "centroid_merge_threshold": 0.40}),
    Setting("icpc threshold 0.35", "icpc", {"threshold": 0.35, "centroid_merge_threshold": 0.45}),
    Setting("icpc threshold 0.40 (default)", "icpc", {}),
    Setting("icpc threshold 0.45", "icpc", {"threshold": 0.45, "centroid_merge_threshold": 0.55}),
    Setting("icpc merge threshold 0.20", "icpc", {"merge_threshold": 0.20}),
    Setting("icpc centroid merge 0.60", "icpc", {"centroid_merge_threshold": 0.60}),
    Setting("icpc centroid merge off (1.0)", "icpc", {"centroid_merge_threshold": 1.0}),
    Setting("icpc refine off", "icpc", {"refine": False}),
    Setting("icpc, no centring, 0.55/0.65/0.4 (the old default)", "icpc",
            {"threshold": 0.55, "centroid_merge_threshold": 0.65, "merge_threshold": 0.4}, None, "none"),
    Setting("hdbscan leaf", "hdbscan", {"selection": "leaf"}),
    Setting("hdbscan eom", "hdbscan", {"selection": "eom"}),
    Setting("icpc, persistence 3/7/3", "icpc", {}, (3, 7, 3)),
    Setting("icpc, persistence 4/7/4 (default)", "icpc", {}, (4, 7, 4)),
    Setting("icpc, persistence 5/7/4", "icpc", {}, (5, 7, 4)),
    Setting("icpc, persistence rule time", "icpc", {}, (4, 7, 4, "time")),
    Setting("icpc, persistence rule count, 4 items", "icpc", {}, (4, 7, 4, "count", 4)),
    Setting("icpc, persistence rule count, 5 items (count default)", "icpc", {}, (4, 7, 4, "count")),
    Setting("icpc, persistence rule count, 6 items", "icpc", {}, (4, 7, 4, "count", 6)),
]

COLUMNS = ["ari", "nmi", "journey_recall", "journey_precision", "transient_reported_as_journeys", "journeys_per_user"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score every configuration in SWEEP (ICPC thresholds, HDBSCAN selection, the persistence "
        "filter) on the synthetic sample, in memory, and print a Markdown table.")
    parser.add_argument("--users", type=int, default=200, help="users in the sample (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")
    parser.add_argument("--domain", default="all", help="the sample's domain: all (default) or one, e.g. film_tv")
    parser.add_argument("--timestamps", default="spread", choices=["spread", "bursty"],
                        help="the sample's timestamps (default: spread)")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "journeys-sweep-cache"),
                        help="folder for the cached item vectors (default: %(default)s)")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch threads for embedding (default: 2)")
    return parser.parse_args(argv)


def validated(table, validate, label: str) -> list:
    """Clean records of ``table``; rejected rows are counted and reported on stderr."""
    clean, rejected = [], defaultdict(int)
    for row in table.to_pylist():
        record, dead = validate(row)
        if dead is not None:
            rejected[dead.reason] += 1
        else:
            clean.append(record)
    if rejected:
        print(f"{label}: {sum(rejected.values())} rows rejected: {dict(rejected)}", file=sys.stderr)
    return clean


def item_vectors(items: list, args: argparse.Namespace, model: str):
    """One vector per item, from the cache when it holds this catalogue, else embedded and cached."""
    import numpy as np

    from journeys.embedding import Embedder, embed_items

    digest = hashlib.sha1("\n".join(it.content_key() for it in items).encode()).hexdigest()[:12]
    path = Path(args.cache_dir) / f"vectors-users{args.users}-seed{args.seed}-{model}-{digest}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(items):
            print(f"item vectors: {len(items)} from {path}", file=sys.stderr)
            return vectors
    print(f"embedding {len(items)} items (once; cached in {path}) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    vectors = embed_items(Embedder(torch_threads=args.torch_threads), items)
    print(f"embedded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"_partial-{os.getpid()}-{path.name}")
    np.save(partial, vectors)
    os.replace(partial, path)
    return vectors


def run_setting(setting: Setting, events_by_user: dict, catalogue: dict, catalogue_df: dict, catalogue_size: int,
                model: str, truth, mean) -> dict:
    from eval.extraction import evaluate
    from journeys.extraction import make_extractor
    from journeys.persistence import PersistenceConfig
    from journeys.user_extraction import ExtractionSettings, extract_user

    persistence = PersistenceConfig(*setting.persistence) if setting.persistence else PersistenceConfig()
    settings = ExtractionSettings(make_extractor(setting.strategy, **setting.params), persistence,
                                  setting.strategy, model)
    pairs = []
    for user_id, events in events_by_user.items():
        result = extract_user(user_id, events, catalogue, settings, catalogue_df, catalogue_size,
                              mean if setting.centring == "mean" else None)
        pairs.extend((user_id, record["item_ids"]) for record in result.journeys)
    return evaluate(pairs, truth)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from journeys import logs

    logs.configure()

    import numpy as np

    from journeys.centring import mean_from_fixed, to_fixed
    from journeys.embedding import DEFAULT_MODEL, model_identity
    from journeys.representation import document_terms
    from journeys.sample.generator import SampleConfig, generate
    from journeys.validation import validate_event, validate_item

    model = model_identity(DEFAULT_MODEL)
    data = generate(SampleConfig(users=args.users, seed=args.seed, domain=args.domain, timestamps=args.timestamps))
    events = validated(data.events, validate_event, "events")
    items_by_id: dict = {}
    # One row per id, the smallest, as the pipeline keeps (None-safe: a plain sort of Items can fail).
    for item in sorted(validated(data.items, validate_item, "items"),
                       key=lambda it: (it.item_id, it.title, it.tags, it.category or "", it.text or "")):
        items_by_id.setdefault(item.item_id, item)
    items = list(items_by_id.values())

    vectors = item_vectors(items, args, model)
    catalogue = {item.item_id: (item, vector) for item, vector in zip(items, vectors)}
    # As the pipeline: catalogue document frequencies, terms seen once left out (absent counts as 1).
    catalogue_df = {term: count for term, count in document_terms(items).items() if count > 1}
    catalogue_size = len(items)

    events_by_user: dict[str, list] = defaultdict(list)
    unknown = 0
    for event in events:
        if event.item_id in catalogue:
            events_by_user[event.user_id].append(event)
        else:
            unknown += 1
    if unknown:
        print(f"events: {unknown} refer to items not in the catalogue and are left out", file=sys.stderr)

    # As the pipeline: the mean of the vectors of the items that have events, from exact sums.
    used = sorted({e.item_id for events in events_by_user.values() for e in events})
    total = sum((to_fixed(catalogue[i][1]) for i in used), np.zeros(vectors.shape[1], dtype=np.int64))
    mean = mean_from_fixed(total, len(used))

    truth = data.truth
    kinds = truth.column("kind").to_pylist()
    planted = truth.select(["planted_id", "kind"]).to_pylist()
    persistent = len({r["planted_id"] for r in planted if r["kind"] == "persistent"})
    transient = len({r["planted_id"] for r in planted if r["kind"] == "transient"})
    print(f"sample: {args.users} users, seed {args.seed}, domain {args.domain}, {args.timestamps} timestamps: "
          f"{len(events)} events ({kinds.count('noise')} noise), "
          f"{len(items)} items; planted: {persistent} persistent journeys "
          f"({persistent / len(events_by_user):.2f} per user), {transient} transient interests")
    print()
    header = ["configuration", "strategy", *COLUMNS, "seconds"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
    for setting in SWEEP:
        started = time.perf_counter()
        scores = run_setting(setting, events_by_user, catalogue, catalogue_df, catalogue_size, model, truth, mean)
        seconds = time.perf_counter() - started
        cells = [setting.label, setting.strategy, *(_cell(scores[c]) for c in COLUMNS), f"{seconds:.1f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
