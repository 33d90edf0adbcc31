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
    persistence: dict | None = None  # PersistenceConfig's fields by name; None: the defaults
    centring: str = "mean"  # "mean" (the default) or "none"
    blocks: tuple = ("text", "tags", "sessions")  # the item representation's blocks (journeys/item_space.py)
    weights: dict | None = None  # block weights; None: the defaults
    log_params: dict | None = None  # ICPC for log-rule histories, over the LOG_ICPC defaults; None: those


# The configurations, one table row each. Edit freely.
SWEEP: list[Setting] = [
    Setting("text only, log histories clustered as the rest", "icpc", {}, blocks=("text",),
            log_params={"threshold": 0.4, "merge_threshold": 0.3, "centroid_merge_threshold": 0.5}),
    Setting("text + tags, log histories clustered as the rest", "icpc", {}, blocks=("text", "tags"),
            log_params={"threshold": 0.4, "merge_threshold": 0.3, "centroid_merge_threshold": 0.5}),
    Setting("text + tags, log histories finer", "icpc", {}, blocks=("text", "tags")),
    Setting("text + tags + sessions, log histories finer (default)", "icpc", {}),
    Setting("default, log threshold 0.45", "icpc", {}, log_params={"threshold": 0.45}),
    Setting("default, log threshold 0.55", "icpc", {}, log_params={"threshold": 0.55}),
    Setting("default, log merge 0.1", "icpc", {}, log_params={"merge_threshold": 0.1}),
    Setting("default, log centroid merge 0.7", "icpc", {}, log_params={"centroid_merge_threshold": 0.7}),
    Setting("default, sessions weight 0.2", "icpc", {}, weights={"sessions": 0.2}),
    Setting("default, sessions weight 0.5", "icpc", {}, weights={"sessions": 0.5}),
    Setting("default, tags weight 0.5", "icpc", {}, weights={"tags": 0.5}),
    Setting("default, tags weight 0.25", "icpc", {}, weights={"tags": 0.25}),
    Setting("default without tags (text + sessions)", "icpc", {}, blocks=("text", "sessions")),
    Setting("default, icpc 0.45 / merge 0.20 / centroid 0.55", "icpc",
            {"threshold": 0.45, "merge_threshold": 0.2, "centroid_merge_threshold": 0.55}),
    Setting("default, hdbscan eom", "hdbscan", {"selection": "eom"}),
    Setting("default, count rule without returns", "icpc", {}, {"count_min_returns": 0}),
    Setting("default, log rule off", "icpc", {}, {"log_max_returns": -1.0}),
]

COLUMNS = ["ari", "nmi", "journey_recall", "journey_precision", "transient_reported_as_journeys", "journeys_per_user"]
GROUP_COLUMNS = ["group_recall", "mean_best_jaccard", "journeys_per_user", "users_without_journeys"]


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
    parser.add_argument("--data", default=None,
                        help="instead of a sample: a folder with events.parquet and items.parquet (e.g. written by "
                        "`journeys convert hetrec-movielens`), scored against --groups")
    parser.add_argument("--groups", default=None, help="with --data: the users' tag groups (user_id, item_id, tag)")
    parser.add_argument("--only", nargs="*", default=None, help="run only the settings whose label has one of these")
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


def run_setting(setting: Setting, data: Prepared, model: str) -> dict:
    from eval.extraction import evaluate, evaluate_groups
    from journeys.extraction import make_extractor
    from journeys.item_space import ItemSpace
    from journeys.persistence import PersistenceConfig
    from journeys.user_extraction import ExtractionSettings, extract_user
    from pipelines.extract import LOG_ICPC

    persistence = PersistenceConfig(**(setting.persistence or {}))
    log_extractor = None
    if setting.strategy == "icpc":
        log_extractor = make_extractor("icpc", **{**setting.params, **LOG_ICPC, **(setting.log_params or {})})
    settings = ExtractionSettings(make_extractor(setting.strategy, **setting.params), persistence,
                                  setting.strategy, model, log_extractor=log_extractor)
    space = ItemSpace(setting.blocks, setting.weights or {}, data.text_mean if setting.centring == "mean" else None,
                      data.tag_space if "tags" in setting.blocks else None,
                      data.embedding_mean if "embedding" in setting.blocks else None)
    pairs = []
    for user_id, events in data.events_by_user.items():
        result = extract_user(user_id, events, data.catalogue, settings, data.catalogue_df, data.catalogue_size, space)
        pairs.extend((user_id, record["item_ids"]) for record in result.journeys)
    if data.truth is not None:
        return evaluate(pairs, data.truth)
    scores = evaluate_groups(pairs, data.groups, data.histories, data.item_tags)
    return {**scores["extracted"], "groups": scores["reference_groups"]}


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


class Prepared(NamedTuple):
    """One data set, validated and embedded, with the catalogue statistics the pipeline computes."""

    events_by_user: dict
    catalogue: dict
    catalogue_df: dict
    catalogue_size: int
    text_mean: object
    tag_space: object
    embedding_mean: object
    truth: object  # the sample's truth table, or None for real data scored on --groups
    groups: dict | None = None
    histories: dict | None = None
    item_tags: dict | None = None


def prepare(args: argparse.Namespace, model: str) -> tuple[Prepared, str]:
    import numpy as np

    from journeys import io
    from journeys.centring import mean_from_fixed, to_fixed
    from journeys.item_space import TagSpace, unit_vector
    from journeys.representation import document_terms
    from journeys.sample.generator import SampleConfig, generate
    from journeys.validation import validate_event, validate_item

    if args.data:
        events_table = io.read_table(str(Path(args.data) / "events.parquet"))
        items_table = io.read_table(str(Path(args.data) / "items.parquet"))
        truth, described = None, f"{args.data}"
    else:
        sample = generate(SampleConfig(users=args.users, seed=args.seed, domain=args.domain,
                                       timestamps=args.timestamps))
        events_table, items_table, truth = sample.events, sample.items, sample.truth
        described = f"sample: {args.users} users, seed {args.seed}, domain {args.domain}, {args.timestamps} timestamps"
    events = validated(events_table, validate_event, "events")
    items_by_id: dict = {}
    # One row per id, the smallest, as the pipeline keeps (None-safe: a plain sort of Items can fail).
    for item in sorted(validated(items_table, validate_item, "items"),
                       key=lambda it: (it.item_id, it.title, it.tags, it.category or "", it.text or "")):
        items_by_id.setdefault(item.item_id, item)
    items = list(items_by_id.values())

    vectors = item_vectors(items, args, model)
    catalogue = {item.item_id: (item, vector) for item, vector in zip(items, vectors)}
    # As the pipeline: catalogue document frequencies, terms seen once left out (absent counts as 1).
    catalogue_df = {term: count for term, count in document_terms(items).items() if count > 1}

    events_by_user: dict[str, list] = defaultdict(list)
    unknown = 0
    for event in events:
        if event.item_id in catalogue:
            events_by_user[event.user_id].append(event)
        else:
            unknown += 1
    if unknown:
        print(f"events: {unknown} refer to items not in the catalogue and are left out", file=sys.stderr)

    # As the pipeline: the statistics of the items that have events, from exact sums.
    used = sorted({e.item_id for events in events_by_user.values() for e in events})
    total = sum((to_fixed(catalogue[i][1]) for i in used), np.zeros(vectors.shape[1], dtype=np.int64))
    text_mean = mean_from_fixed(total, len(used))
    tag_space = TagSpace.fit(catalogue[i][0] for i in used)
    given = [catalogue[i][0].embedding for i in used if catalogue[i][0].embedding is not None]
    embedding_mean = None
    if given:
        fixed = sum(to_fixed(unit_vector(v)) for v in given)
        embedding_mean = mean_from_fixed(fixed, len(given))

    groups = histories = item_tags = None
    if args.data:
        from eval.extraction import tag_groups

        histories = {u: {e.item_id for e in evs} for u, evs in events_by_user.items()}
        groups = tag_groups(io.read_table(args.groups).to_pylist(), histories)
        item_tags = {it.item_id: list(it.tags) for it in items}
    prepared = Prepared(events_by_user, catalogue, catalogue_df, len(items), text_mean, tag_space, embedding_mean,
                        truth, groups, histories, item_tags)
    return prepared, f"{described}: {len(events)} events, {len(items)} items, {len(events_by_user)} users"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from journeys import logs

    logs.configure()

    from journeys.embedding import DEFAULT_MODEL, model_identity

    model = model_identity(DEFAULT_MODEL)
    data, described = prepare(args, model)
    columns = COLUMNS if data.truth is not None else GROUP_COLUMNS
    print(described)
    print()
    header = ["configuration", "strategy", *columns, "seconds"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
    chosen = [s for s in SWEEP if not args.only or any(word in s.label for word in args.only)]
    for setting in chosen:
        started = time.perf_counter()
        scores = run_setting(setting, data, model)
        seconds = time.perf_counter() - started
        cells = [setting.label, setting.strategy, *(_cell(scores.get(c)) for c in columns), f"{seconds:.1f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
