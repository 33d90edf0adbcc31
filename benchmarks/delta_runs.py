"""Delta runs against fresh ones: wall time, CPU time, peak memory, and whether they agree.

``python benchmarks/incremental.py --delta ...`` runs this. The data (the built-in sample at about
``--size`` events, or MovieLens as written by `journeys convert movielens`) is split into what a
previous run saw and what came after:

- ``--split users`` (the sample): a share ``--active`` of the users (10%, by a hash of the id) have
  new events, those after a time T chosen so that they are about ``--new`` (5%) of all events; the
  other users' events after T are left out of the data altogether, so they have no new events.
- ``--split time`` (MovieLens): every event after the time that leaves ``--new`` of them is new.

Then, each in a fresh child process (peak resident memory sampled every 20 ms; no embedding cache,
default options, so a fresh run embeds every item and a delta run only the new ones):

1. ``previous``: ``journeys extract`` over the events before the split;
2. ``delta``: ``--previous previous --delta`` over the new events, twice (the rerun must write
   byte-identical datasets: the summaries' SHA-256 of every file are compared);
3. ``fresh``: over all events (before + new).

Printed (JSON, also appended to ``--results``): each run's seconds, CPU seconds and peak memory; the
ratio delta / fresh; the delta summary's carried and recomputed parts; and the equivalence check:
users whose journeys (as sets of item sets) differ between the delta and the fresh run, split into
recomputed and carried users.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from memory import MIB, PeakRSS

EVENTS_PER_USER = 72.5  # the default sample


def _split(args, data: str) -> dict:
    """Write before.parquet, new.parquet and all.parquet beside the data; returns their counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from journeys import io
    from pipelines.transforms import stable_shard

    events = io.read_table(os.path.join(data, "events.parquet"))
    times = events["timestamp"].cast(pa.int64())
    if args.split == "users":
        active = pa.array([stable_shard(u, 1000) < args.active * 1000 for u in events["user_id"].to_pylist()])
        # A share s of each user's events after T: new = active * s, all = 1 - s + active * s.
        after = args.new / (args.active + args.new * (1 - args.active))
        cut = pc.quantile(times, q=1 - after)[0].as_py()
        later = pc.greater_equal(times, cut)
        new = events.filter(pc.and_(later, active))
        before = events.filter(pc.invert(later))
    else:
        cut = pc.quantile(times, q=1 - args.new)[0].as_py()
        later = pc.greater_equal(times, cut)
        new, before = events.filter(later), events.filter(pc.invert(later))
    paths = {name: os.path.join(args.work, f"{name}.parquet") for name in ("before", "new", "all")}
    io.write_table(before, paths["before"])
    io.write_table(new, paths["new"])
    io.write_table(pa.concat_tables([before, new]), paths["all"])
    return {"events_before": before.num_rows, "events_new": new.num_rows, "events_all": before.num_rows + new.num_rows,
            "users_all": len(set(before["user_id"].to_pylist()) | set(new["user_id"].to_pylist())),
            "users_with_new_events": pc.count_distinct(new["user_id"]).as_py(), **paths}


def child(spec: dict) -> dict:
    """One extraction, timed, in this fresh process."""
    from journeys import logs

    logs.configure()
    import logging

    logging.getLogger("pipelines").setLevel(logging.WARNING)
    logging.getLogger("journeys").setLevel(logging.WARNING)
    import sentence_transformers  # noqa: F401  (imports are not what is timed)

    from pipelines import extract

    with PeakRSS() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        summary = extract.run(spec["argv"], save_main_session=False)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
            "peak_rss_mib": round(memory.peak / MIB, 1), "journeys": summary["journeys"],
            "texts_embedded": summary["items"]["texts_embedded"], "balanced": summary["events"]["balanced"],
            **({"delta": summary["delta"]} if "delta" in summary else {})}


def _extract(label: str, argv: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, json.dumps({"argv": argv})], check=True,
                          stdout=subprocess.PIPE, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {label}: {result['seconds']} s (CPU {result['cpu_seconds']} s), peak {result['peak_rss_mib']} MiB",
          file=sys.stderr, flush=True)
    return result


def _journeys_by_user(folder: str) -> dict:
    from journeys import io

    table = io.read_table(os.path.join(folder, "journeys"), columns=["user_id", "item_ids"])
    found: dict = {}
    for user, items in zip(table["user_id"].to_pylist(), table["item_ids"].to_pylist()):
        found.setdefault(user, set()).add(frozenset(items))
    return found


def _hashes(folder: str) -> dict:
    outputs = json.load(open(os.path.join(folder, "summary.json")))["outputs"]
    return {name: outputs[name]["sha256"] for name in outputs}


def run(args, data: str) -> dict:
    from journeys import io

    split = _split(args, data)
    items = os.path.join(data, "items.parquet")
    out = {name: os.path.join(args.work, name) for name in ("previous", "delta", "delta_again", "fresh")}
    base = ["--items", items, "--num_shards", str(args.num_shards), *args.extract_args]
    counted = {k: v for k, v in split.items() if k.startswith(("events_", "users_"))}
    report = {"data": args.data, "split": args.split, "extract_args": args.extract_args, **counted}
    runs = {"previous": _extract("previous", ["--events", split["before"], "--out", out["previous"], *base])}
    delta = ["--events", split["new"], "--previous", out["previous"], "--delta", *base]
    runs["delta"] = _extract("delta", [*delta, "--out", out["delta"]])
    runs["fresh"] = _extract("fresh", ["--events", split["all"], "--out", out["fresh"], *base])
    runs["delta_again"] = _extract("delta again", [*delta, "--out", out["delta_again"]])
    report["runs"] = runs
    report["delta_over_fresh"] = {"seconds": round(runs["delta"]["seconds"] / runs["fresh"]["seconds"], 3),
                                  "cpu_seconds": round(runs["delta"]["cpu_seconds"] / runs["fresh"]["cpu_seconds"], 3),
                                  "peak_rss": round(runs["delta"]["peak_rss_mib"] / runs["fresh"]["peak_rss_mib"], 3)}
    first, again = _hashes(out["delta"]), _hashes(out["delta_again"])
    report["delta_rerun_identical"] = {name: first[name] == again[name] for name in first}
    fresh, delta_found = _journeys_by_user(out["fresh"]), _journeys_by_user(out["delta"])
    active = set(io.read_table(split["new"], columns=["user_id"])["user_id"].to_pylist())
    differ = sorted(u for u in fresh.keys() | delta_found.keys() if fresh.get(u) != delta_found.get(u))
    report["equivalence"] = {"users_differing": len(differ),
                             "recomputed_users_differing": sum(u in active for u in differ),
                             "carried_users_differing": sum(u not in active for u in differ),
                             "examples": differ[:5]}
    return report


if __name__ == "__main__":  # a child: one timed extraction
    print(json.dumps(child(json.loads(sys.argv[1]))))
