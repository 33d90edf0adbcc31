"""Incremental runs: identity kept across a run on a history cut in time and a run on the whole one.

For a data set (the built-in sample, or MovieLens as written by `journeys convert movielens`) this
splits the events at a cut time (``--cut`` as a share of the time range), then in this process:

1. ``journeys run`` on the events before the cut (the "previous" run);
2. ``journeys run`` on all events with ``--previous`` (the incremental run), ``--repeats`` times;
3. ``journeys run`` on all events without it (a fresh run), ``--repeats`` times.

All three share one embedding cache, filled before anything is timed, so embedding is not what is
compared. Every call of the namer's ``name`` method is counted by wrapping it (the runs are in this
process, on the local runner), so "journeys given to the namer" is measured, not read from a summary
(an LLM namer's own calls of the keyword namer, for its fallbacks, are not counted again).

Printed (JSON):

- ``identity`` (sample only): planted persistent journeys found in both runs (an extracted journey
  of the same user matches the planted one's events with Jaccard >= 0.5, as eval/extraction.py
  counts), and how many of them kept their journey_id;
- ``lifecycle``: the export's status counts, and for the sample those of the planted journeys found
  in the incremental run, by when they ran (after the cut: should be ``new``; across it; before it)
  and whether the previous run found them (if not, ``new`` is right for them too);
- ``namer``: journeys given to the namer in the incremental and the fresh run;
- ``wall_seconds``: median of each run's steps (extract, name, export, total) and the naming
  time saved by the incremental run.

With ``--delta`` it compares instead a delta run (``journeys extract --previous RUN --delta`` over
the new events only) with a fresh run over all events: time, memory, agreement and byte-identical
reruns; see benchmarks/delta_runs.py.

Run from the repository root (about 5 minutes for the sample with the keywords namer on 2 cores):

    python benchmarks/incremental.py --data sample --work /tmp/inc-bench
    python benchmarks/incremental.py --data sample --work /tmp/inc-bench --namer few-shot
    python benchmarks/incremental.py --data movielens --src ../shared/data/movielens-small --work /tmp/inc-ml
    python benchmarks/incremental.py --delta --size 1000000 --work /tmp/delta-1m --results delta.jsonl
    python benchmarks/incremental.py --delta --data movielens --split time --work /tmp/delta-ml
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io as text_io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the benchmarks' own modules

import delta_runs  # noqa: E402

from journeys import cli, io  # noqa: E402
from journeys.naming.keywords import KeywordNamer  # noqa: E402
from journeys.naming.llm import LLMNamer  # noqa: E402

MATCH_JACCARD = 0.5
NAMED = Counter()  # journeys given to a namer's name(), per run label
_current = ["none"]  # the label of the run going on


_inside = threading.local()  # an LLM namer calls the keyword namer for its fallbacks: count the outer call


def _count_namer_calls():
    for cls in (KeywordNamer, LLMNamer):
        original = cls.name

        def counted(self, journeys, _original=original):
            depth = getattr(_inside, "depth", 0)
            if depth == 0:
                NAMED[_current[0]] += len(journeys)
            _inside.depth = depth + 1
            try:
                return _original(self, journeys)
            finally:
                _inside.depth = depth

        cls.name = counted


def _run(label: str, events: str, items: str, out: str, cache: str, namer: list[str], previous: str | None):
    _current[0] = label
    argv = ["run", "--events", events, "--items", items, "--out", out, "--embedding_cache", cache, *namer]
    if previous:
        argv += ["--previous", previous]
    printed = text_io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = cli.main(argv)
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{label} run failed ({code})")
    steps = {step: json.loads(open(os.path.join(out, folder, marker)).read())["wall_seconds"]
             for step, folder, marker in (("extract", "extract", "summary.json"), ("name", "named", "summary.json"),
                                          ("export", "export", "_manifest.json"))}
    return {"total": round(wall, 2), **steps}


def _planted_matches(journeys: pa.Table, truth: pa.Table) -> dict[str, str]:
    """planted_id -> journey_id of the extracted journey that matches it best (Jaccard >= 0.5)."""
    columns = truth.select(["user_id", "item_id", "planted_id", "kind"]).to_pydict()
    events_of: dict[tuple, set] = defaultdict(set)
    planted: dict[str, set] = defaultdict(set)
    for n, (user, item, pid, kind) in enumerate(zip(*(columns[c] for c in ("user_id", "item_id", "planted_id",
                                                                           "kind")))):
        events_of[(user, item)].add(n)
        if kind == "persistent":
            planted[pid].add(n)
    by_user = defaultdict(list)
    for jid, user, items in zip(*(journeys[c].to_pylist() for c in ("journey_id", "user_id", "item_ids"))):
        by_user[user].append((jid, {n for i in items for n in events_of.get((user, i), ())}))
    found = {}
    for pid, members in planted.items():
        user = pid.split("/")[0]
        best = max(((len(members & e) / len(members | e), jid) for jid, e in by_user.get(user, [])), default=None)
        if best and best[0] >= MATCH_JACCARD:
            found[pid] = best[1]
    return found


def _kept_share(args) -> float:
    """--split users leaves out the inactive users' events after the split: the share of the
    generated events that the data keeps, so that --size counts the events a fresh run reads."""
    if args.split != "users":
        return 1.0
    after = args.new / (args.active + args.new * (1 - args.active))
    return 1 - after + args.active * after


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("sample", "movielens"), default="sample")
    parser.add_argument("--src", default="../shared/data/movielens-small", help="MovieLens CSV folder")
    parser.add_argument("--work", required=True, help="work folder (replaced)")
    parser.add_argument("--cut", type=float, default=0.75, help="cut time as a share of the events' time range")
    parser.add_argument("--namer", default="keywords")
    parser.add_argument("--model", default=None, help="LLM namers' model (default: the built-in base)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--delta", action="store_true", help="compare a delta run with a fresh one instead")
    parser.add_argument("--size", type=int, default=14500, help="--delta, sample: about this many events in all")
    parser.add_argument("--split", choices=("users", "time"), default="users",
                        help="--delta: new events for a share of the users (users) or after a time (time)")
    parser.add_argument("--active", type=float, default=0.10, help="--delta --split users: users with new events")
    parser.add_argument("--new", type=float, default=0.05, help="--delta: the new events' share of all events")
    parser.add_argument("--num_shards", type=int, default=4, help="--delta: the runs' --num_shards")
    parser.add_argument("--results", default=None, help="--delta: append the JSON report to this file")
    parser.add_argument("--extract_args", nargs="*", default=[],
                        help="--delta: more options for every extraction, e.g. --extract_args=--centring=none")
    args = parser.parse_args()

    import shutil

    shutil.rmtree(args.work, ignore_errors=True)
    data = os.path.join(args.work, "data")
    with contextlib.redirect_stdout(text_io.StringIO()):
        if args.data == "sample":
            users = round(args.size / delta_runs.EVENTS_PER_USER / _kept_share(args)) if args.delta else 200
            cli.main(["sample", "--out", data, "--users", str(users)])
        else:
            cli.main(["convert", "movielens", "--src", args.src, "--out", data])
    if args.delta:
        report = delta_runs.run(args, data)
        print(json.dumps(report, indent=2))
        if args.results:
            with open(args.results, "a") as handle:
                handle.write(json.dumps(report) + "\n")
        return 0
    events_path, items = os.path.join(data, "events.parquet"), os.path.join(data, "items.parquet")
    events = io.read_table(events_path)
    low, high = pc.min(events["timestamp"]).value, pc.max(events["timestamp"]).value
    cut = pa.scalar(int(low + args.cut * (high - low)), type=pa.timestamp("us", tz="UTC"))
    before_path = os.path.join(args.work, "before.parquet")
    io.write_table(events.filter(pc.less(events["timestamp"], cut)), before_path)

    cache = os.path.join(args.work, "cache")
    namer = ["--namer", args.namer, *(["--model", args.model] if args.model else [])]
    _count_namer_calls()
    warm = os.path.join(args.work, "warm")  # fills the embedding cache (and the OS file cache): untimed
    _run("warm", events_path, items, warm, cache, ["--namer", "keywords"], None)
    previous = os.path.join(args.work, "previous")
    previous_wall = _run("previous", before_path, items, previous, cache, namer, None)
    incremental, fresh = [], []
    for _ in range(args.repeats):
        NAMED["incremental"] = NAMED["fresh"] = 0
        incremental.append(_run("incremental", events_path, items, os.path.join(args.work, "incremental"),
                                cache, namer, previous))
        fresh.append(_run("fresh", events_path, items, os.path.join(args.work, "fresh"), cache, namer, None))

    def median(runs):
        return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}

    inc_out = os.path.join(args.work, "incremental")
    labels = io.read_table(os.path.join(inc_out, "export", "journey_labels"))
    named_summary = json.load(open(os.path.join(inc_out, "named", "summary.json")))
    journeys = named_summary["journeys_read"]
    report = {
        "data": args.data, "cut": cut.as_py().isoformat(), "cut_share": args.cut, "namer_strategy": args.namer,
        "model": args.model or "default", "events_before_cut": events.filter(pc.less(events["timestamp"], cut))
        .num_rows, "events": events.num_rows,
        "journeys": {"previous": json.load(open(os.path.join(previous, "named", "summary.json")))["journeys_read"],
                     "incremental": journeys},
        "lineage": json.load(open(os.path.join(inc_out, "extract", "summary.json")))["lineage"],
        "lifecycle": {"export_status": dict(Counter(labels["status"].to_pylist()))},
        "namer": {"incremental_journeys_named": NAMED["incremental"], "incremental_journeys": journeys,
                  "incremental_share_named": round(NAMED["incremental"] / max(journeys, 1), 3),
                  "summary_sent_to_namer": named_summary["sent_to_namer"],
                  "fresh_journeys_named": NAMED["fresh"]},
        "wall_seconds": {"previous": previous_wall, "incremental": median(incremental), "fresh": median(fresh),
                         "repeats": args.repeats},
    }
    saved = report["wall_seconds"]["fresh"]["name"] - report["wall_seconds"]["incremental"]["name"]
    report["wall_seconds"]["naming_saved"] = round(saved, 2)
    report["wall_seconds"]["naming_saved_share"] = round(saved / max(report["wall_seconds"]["fresh"]["name"], 1e-9), 3)

    if args.data == "sample":
        truth = io.read_table(os.path.join(data, "truth.parquet"))
        truth_before = truth.filter(pc.less(truth["timestamp"], cut))
        first = _planted_matches(io.read_table(os.path.join(previous, "extract", "journeys")), truth_before)
        second = _planted_matches(io.read_table(os.path.join(inc_out, "extract", "journeys")), truth)
        both = sorted(set(first) & set(second))
        kept = sum(first[p] == second[p] for p in both)
        report["identity"] = {"planted_found_in_both": len(both), "kept_id": kept,
                              "kept_share": round(kept / max(len(both), 1), 4),
                              "planted_found_previous": len(first), "planted_found_incremental": len(second)}
        persistent = truth.filter(pc.equal(truth["kind"], "persistent"))
        spans = defaultdict(list)
        for pid, ts in zip(persistent["planted_id"].to_pylist(), persistent["timestamp"].to_pylist()):
            spans[pid].append(ts)
        cut_time = cut.as_py()
        status_of = dict(zip(labels["journey_id"].to_pylist(), labels["status"].to_pylist()))
        by_when = defaultdict(Counter)
        for pid, jid in second.items():
            when = "after_cut" if min(spans[pid]) >= cut_time else "before_cut" if max(spans[pid]) < cut_time \
                else "across_cut"
            seen = "found_before" if pid in first else "not_found_before"
            by_when[f"{when}/{seen}"][status_of[jid]] += 1
        report["lifecycle"]["planted_by_when"] = {k: dict(v) for k, v in sorted(by_when.items())}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
