"""Two namers on users' own tag groups, paired: does the name contain the user's tag, and how close is it.

For real data with user tags (HetRec MovieLens-2k: `journeys convert hetrec-movielens`), the reference
groups are those of `journeys eval extraction --groups`: a tag a user gave 3+ of their films. Each
group whose best-matching extracted journey has Jaccard >= 0.5 is scored on that journey's name:

- ``name_contains_tag``: the name contains the tag as whole words (as `journeys eval extraction
  --named` scores it; a floor, since a name can say the same in other words);
- ``semantic``: MiniLM cosine between the name and the tag (the semantic metric of `journeys eval
  naming`).

Only the matched journeys are named (each namer sees the same list, in user order, so names are
made distinct within a user among them). Each metric's paired difference (second namer - first) is
bootstrapped over the groups, with a 95% interval.

    python benchmarks/naming_groups.py --journeys hx/journeys --groups hetrec/groups.parquet \\
        --events hetrec/events.parquet --namers keywords,fine-tuned --json groups.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import time
from pathlib import Path


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", required=True, help="journeys/ folder from `journeys extract`")
    parser.add_argument("--groups", required=True, help="groups.parquet from `journeys convert hetrec-movielens`")
    parser.add_argument("--events", required=True, help="the events the journeys were extracted from")
    parser.add_argument("--namers", default="keywords,fine-tuned", help="two namers, the baseline first")
    parser.add_argument("--adapter", default=None, help="tuned LLM namer: a folder from `journeys tune` "
                        "(default: the packaged adapter)")
    parser.add_argument("--candidates", type=int, default=None, help="LLM namer (default: the pipeline's)")
    parser.add_argument("--max_titles", type=int, default=None, help="LLM namer: titles per prompt (default: the "
                        "adapter's)")
    parser.add_argument("--quantize", default=None, choices=["none", "int8"], help="(default: the pipeline's)")
    parser.add_argument("--skip_grounded", type=float, default=None, help="(default: the pipeline's)")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--torch_threads", type=int, default=1)
    parser.add_argument("--json", help="also write the report here")
    return parser.parse_args(argv)


def matched(journeys: list[dict], groups: dict) -> list[tuple[tuple[str, str], dict]]:
    """(group key, its best-matching journey) for every group matched at Jaccard >= 0.5."""
    from collections import defaultdict

    from eval.extraction import MATCH_JACCARD, _jaccard

    by_user = defaultdict(list)
    for journey in journeys:
        by_user[journey["user_id"]].append(journey)
    pairs = []
    for key, items in groups.items():
        candidates = by_user.get(key[0], [])
        if not candidates:
            continue
        best = max(candidates, key=lambda j: _jaccard(items, set(j["item_ids"])))
        if _jaccard(items, set(best["item_ids"])) >= MATCH_JACCARD:
            pairs.append((key, best))
    return pairs


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from eval.extraction import _fold, tag_groups
    from eval.naming import bootstrap
    from journeys import io
    from journeys.embedding import Embedder
    from journeys.naming import create_namer
    from pipelines import name as name_pipeline

    torch.set_num_threads(args.torch_threads)
    histories: dict[str, set[str]] = {}
    for row in io.read_table(args.events, columns=["user_id", "item_id"]).to_pylist():
        histories.setdefault(str(row["user_id"]), set()).add(str(row["item_id"]))
    groups = tag_groups(io.read_table(args.groups, columns=["user_id", "item_id", "tag"]).to_pylist(), histories)
    journeys = io.read_table(args.journeys).to_pylist()
    pairs = matched(journeys, groups)
    unique = {j["journey_id"]: j for _, j in pairs}
    to_name = sorted(unique.values(), key=lambda j: (j["user_id"], j["first_ts"], j["journey_id"]))
    embedder = Embedder(torch_threads=args.torch_threads)
    llm_options = {
        "candidates": args.candidates or name_pipeline.DEFAULT_CANDIDATES,
        "quantize": args.quantize or name_pipeline.DEFAULT_QUANTIZE,
        "skip_grounded": args.skip_grounded if args.skip_grounded is not None else (
            name_pipeline.DEFAULT_SKIP_GROUNDED if name_pipeline.DEFAULT_SKIP_GROUNDED <= 1 else None),
    }
    if args.adapter:
        llm_options["adapter"] = args.adapter
    if args.max_titles:
        llm_options["max_titles"] = args.max_titles
    tags = [tag for (_, tag), _ in pairs]
    tag_vectors = embedder.encode(tags)
    per_namer, timings = {}, {}
    for strategy in args.namers.split(","):
        options = {} if strategy == "keywords" else llm_options
        namer = create_namer(strategy, embedder=embedder, torch_threads=args.torch_threads, **options)
        started, cpu = time.perf_counter(), time.process_time()
        names = {r.journey_id: r.name for r in namer.name(to_name)}
        timings[strategy] = {"seconds": round(time.perf_counter() - started, 1),
                             "cpu_seconds": round(time.process_time() - cpu, 1)}
        group_names = [names[j["journey_id"]] for _, j in pairs]
        vectors = embedder.encode(group_names)
        per_namer[strategy] = {
            "name_contains_tag": [float(f" {_fold(t)} " in f" {_fold(n)} ") for t, n in zip(tags, group_names)],
            "semantic": [float(a @ b) for a, b in zip(vectors, tag_vectors)],
            "names": group_names,
        }
    first, second = args.namers.split(",")
    report = {
        "groups": len(groups), "matched_groups": len(pairs), "journeys_named": len(to_name),
        "settings": {"namers": [first, second], **llm_options, "torch_threads": args.torch_threads},
        "timings": timings,
        "metrics": {s: {m: bootstrap(v[m], args.bootstrap) for m in ("name_contains_tag", "semantic")}
                    for s, v in per_namer.items()},
        "difference": {m: bootstrap([b - a for a, b in zip(per_namer[first][m], per_namer[second][m])],
                                    args.bootstrap) for m in ("name_contains_tag", "semantic")},
        "examples": [[tag, per_namer[first]["names"][i], per_namer[second]["names"][i]]
                     for i, tag in enumerate(tags[:15])],
    }
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
