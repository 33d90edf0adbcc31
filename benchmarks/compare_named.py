"""Two `journeys run` (or `journeys name`) outputs of the same sample, compared on its held-out test topics.

The reference set is `journeys eval naming`'s (journeys of users with a test-topic match; the matched
ones scored against the topic's reference name), read from names the pipelines already wrote, so no
namer runs again: e.g. the README's first command with `--namer keywords` and with the default namer.
Per metric, each run's mean and the paired difference (second - first) bootstrapped over the scored
journeys, with 95% intervals.

    python benchmarks/compare_named.py --truth sample/truth.parquet --journeys out-kw/extract/journeys \\
        --named out-kw/named/named out/named/named --json compare.json
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", required=True, help="the sample's truth.parquet")
    parser.add_argument("--journeys", required=True, help="the extracted journeys/ both runs named")
    parser.add_argument("--named", required=True, nargs=2, help="two named/ folders: the baseline, then the other")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)

    from eval.naming import REFERENCE_METRICS, bootstrap, reference_scores, sample_reference_set
    from journeys import io
    from journeys.embedding import Embedder

    reference_set = sample_reference_set(io.read_table(args.journeys).to_pylist(), args.truth)
    scored = [(j["journey_id"], r) for j, r in zip(reference_set.journeys, reference_set.references) if r]
    embedder = Embedder()
    values, shares = {}, {}
    for folder in args.named:
        rows = {r["journey_id"]: r for r in io.read_table(folder).to_pylist()}
        missing = [i for i, _ in scored if i not in rows]
        if missing:
            raise ValueError(f"{folder} has no name for {len(missing)} scored journeys (e.g. {missing[0]}): "
                             "both runs must name the same extraction")
        values[folder] = reference_scores([rows[i]["name"] for i, _ in scored], [r for _, r in scored], embedder)
        reasons = [rows[i]["fallback_reason"] or "" for i, _ in scored]
        shares[folder] = {"keyword_chosen": round(sum(r.startswith("keyword name chosen") for r in reasons)
                                                  / len(reasons), 3),
                          "model_not_asked": round(sum("not asked" in r for r in reasons) / len(reasons), 3)}
    first, second = args.named
    report = {
        "scored": len(scored), "named": len(reference_set.journeys), "runs": {
            folder: {"metrics": {m: bootstrap(values[folder][m], args.bootstrap) for m in REFERENCE_METRICS},
                     **shares[folder]} for folder in args.named},
        "difference": {m: bootstrap([b - a for a, b in zip(values[first][m], values[second][m])], args.bootstrap)
                       for m in REFERENCE_METRICS},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
