"""Can the extraction use a team's own item vectors? A grouping the text cannot show, recovered.

Writes the built-in sample with every title replaced by a meaningless id ("item 123") and no tags,
category or text, and gives each item a vector that carries its planted topic (one axis per topic,
plus Gaussian noise of ``--noise`` per dimension): only the given vectors say what goes together.
Then runs the Beam extraction twice, text only (the ids) and with the embedding block, and scores
both against the sample's truth.

    python benchmarks/given_vectors.py                   # 200 users, seed 0, noise 0.06
    python benchmarks/given_vectors.py --users 50 --noise 0.1
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import sys
import tempfile
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Extraction on meaningless titles with item vectors that hold "
                                     "the planted topics: text only against the embedding block.")
    parser.add_argument("--users", type=int, default=200, help="users in the sample (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")
    parser.add_argument("--noise", type=float, default=0.06, help="noise per vector dimension (default: 0.06)")
    parser.add_argument("--torch-threads", type=int, default=1, help="the pipeline's --torch_threads (default: 1)")
    return parser.parse_args(argv)


def hidden_grouping(data, noise: float, seed: int):
    """(items with meaningless titles and an embedding column, the number of topics)."""
    import numpy as np
    import pyarrow as pa

    truth = data.truth.to_pylist()
    topic_of = {r["item_id"]: r["topic_id"] for r in truth if r["topic_id"] is not None}
    topics = sorted(set(topic_of.values()))
    width = len(topics) + 16
    rng = np.random.default_rng(seed)
    rows = []
    for number, item in enumerate(data.items.to_pylist()):
        vector = rng.normal(0, noise, width)
        if item["item_id"] in topic_of:
            vector[topics.index(topic_of[item["item_id"]])] += 1.0
        rows.append({"item_id": item["item_id"], "title": f"item {number}", "tags": [], "category": None,
                     "text": None, "embedding": vector.tolist()})
    return pa.Table.from_pylist(rows), len(topics)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from eval.extraction import evaluate
    from journeys import io, logs
    from journeys.sample.generator import SampleConfig, generate
    from pipelines import extract

    logs.configure()
    data = generate(SampleConfig(users=args.users, seed=args.seed))
    items, topics = hidden_grouping(data, args.noise, args.seed)
    with tempfile.TemporaryDirectory(prefix="journeys-given-") as work:
        folder = Path(work)
        io.write_table(data.events, str(folder / "events.parquet"))
        io.write_table(items, str(folder / "items.parquet"))
        results = {}
        for label, blocks in (("text only (meaningless ids)", "text"), ("embedding block", "embedding"),
                              ("default blocks (text, tags, embedding, sessions)", None)):
            out = folder / f"out-{len(results)}"
            argv = ["--events", str(folder / "events.parquet"), "--items", str(folder / "items.parquet"),
                    "--out", str(out), "--torch_threads", str(args.torch_threads)]
            summary = extract.run(argv + (["--representation", blocks] if blocks else []), save_main_session=False)
            journeys = io.read_table(str(out / "journeys"))
            scores = evaluate(zip(journeys["user_id"].to_pylist(), journeys["item_ids"].to_pylist()), data.truth)
            results[label] = {k: scores[k] for k in ("journey_recall", "journey_precision", "ari",
                                                     "transient_reported_as_journeys")}
            results[label]["blocks"] = [b["name"] for b in summary["representation"]["blocks"]]
    print(f"sample: {args.users} users, seed {args.seed}, {data.events.num_rows} events; vectors: {topics} topic "
          f"axes + 16, noise {args.noise} per dimension")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
