"""End-to-end throughput and peak memory of the extraction pipeline, and the per-event baseline.

For each size (an approximate number of events) this generates the built-in synthetic sample with
as many users as give about that many events (the default sample has about 72.5 events per user),
writes its events and items as Parquet into a work folder, and runs the whole Beam pipeline
(``pipelines.extract.run``) in this process on the local runner, with no embedding cache so that
embedding is measured, default options and one torch thread. Each run reads, validates, embeds
every catalogue item with events once, clusters every user, writes all datasets and the summary.

What is reported per size and variant:

- wall time of ``run()`` (``time.perf_counter``), repeated, as median, min and max;
- events/s = events in the sample / wall seconds (median, and from the fastest and slowest run);
- peak resident memory while the run was going, sampled from ``/proc/self/status`` (VmRSS) every
  20 ms by a background thread: the absolute peak, and the peak minus the RSS just before the run.
  Python rarely gives freed memory back to the OS, so later repeats show a smaller rise; the table
  shows the largest rise over the repeats (normally the first one's).

Modules (Beam, torch, sentence-transformers) are imported once before anything is timed, so no
variant pays for them; loading the model from disk is part of every run, as in a real one.

The baseline (``--embed_per_event``) embeds an item once for every event on it, as a naive pipeline
would; the ratio per-event seconds / per-item seconds says how many times slower that is. The
per-item pipeline embeds each catalogue item that has events once, so the ratio grows with the
number of events per distinct item.

Run from the repository root:

    python benchmarks/extract.py                          # 10k and 100k events, baseline at 10k
    python benchmarks/extract.py --sizes 10000 --repeats 5
    python benchmarks/extract.py --sizes 1500 --per-event-sizes 1500 --repeats 1 --json bench.json
"""

from __future__ import annotations

import os

# Before anything heavy is imported: no hub calls (the default model is packaged) and no progress bars.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import logging
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from memory import MIB, PeakRSS

EVENTS_PER_USER = 72.5  # the default sample: about 14,500 events for 200 users
LARGE_SIZE = 50_000  # sizes from here on use --repeats-large
TORCH_THREADS = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End-to-end throughput (events/s) and peak memory of the extraction pipeline, run "
        "in-process on the local runner with no embedding cache, on the synthetic sample scaled to "
        "each size; optionally against the per-event-embedding baseline.",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="approximate numbers of events; users = round(size / 72.5) (default: 10000 100000)")
    parser.add_argument("--per-event-sizes", type=int, nargs="*", default=[10_000],
                        help="sizes (among --sizes) at which also to run the --embed_per_event baseline. "
                        "Off at 100k by default: per-event embedding of 100k events takes over 15 minutes "
                        "on 2 CPU cores. Give no value to skip the baseline (default: 10000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help=f"runs per variant for sizes below {LARGE_SIZE} (default: 3)")
    parser.add_argument("--repeats-large", type=int, default=1,
                        help=f"runs per variant for sizes of {LARGE_SIZE} and more (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")
    parser.add_argument("--workdir", default=None,
                        help="folder for the inputs and outputs, kept afterwards (default: a new temporary folder, "
                        "removed at the end)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if any(size < 1 for size in args.sizes):
        parser.error("sizes must be at least 1")
    if args.repeats < 1 or args.repeats_large < 1:
        parser.error("repeats must be at least 1")
    return args


def prepare(size: int, seed: int, folder: Path) -> dict:
    """Generate the sample for ``size`` events and write events/items Parquet into ``folder``."""
    import pyarrow.compute as pc

    from journeys import io
    from journeys.sample.generator import SampleConfig, generate

    users = max(1, round(size / EVENTS_PER_USER))
    data = generate(SampleConfig(users=users, seed=seed))
    folder.mkdir(parents=True, exist_ok=True)
    events, items = str(folder / "events.parquet"), str(folder / "items.parquet")
    io.write_table(data.events, events)
    io.write_table(data.items, items)
    return {
        "size": size,
        "users": users,
        "events": data.events.num_rows,
        "items": data.items.num_rows,
        "items_with_events": pc.count_distinct(data.events["item_id"]).as_py(),
        "events_path": events,
        "items_path": items,
    }


def run_once(sample: dict, out: Path, per_event: bool) -> dict:
    from pipelines import extract

    argv = ["--events", sample["events_path"], "--items", sample["items_path"], "--out", str(out),
            "--torch_threads", str(TORCH_THREADS)]
    if per_event:
        argv.append("--embed_per_event")
    with PeakRSS() as memory:
        started = time.perf_counter()
        # The in-process runner needs no pickled __main__; pickling this script would only cost time.
        summary = extract.run(argv, save_main_session=False)
        seconds = time.perf_counter() - started
    events = summary["events"]
    if not events["balanced"] or events["read"] != sample["events"]:
        print(f"warning: size {sample['size']}: the summary read {events['read']} events "
              f"(balanced: {events['balanced']}), the sample has {sample['events']}", file=sys.stderr)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "seconds": seconds,
        "peak_rss_mib": memory.peak / MIB,
        "peak_rise_mib": (memory.peak - memory.before) / MIB,
        "journeys": summary["journeys"],
        "transient_clusters": summary["transient_clusters"],
    }


def measure(sample: dict, repeats: int, per_event: bool, workdir: Path) -> dict:
    variant = "per-event" if per_event else "per-item"
    runs = []
    for repeat in range(repeats):
        run = run_once(sample, workdir / f"out-{sample['size']}-{variant}-{repeat}", per_event)
        print(f"  {variant:9} size {sample['size']}: run {repeat + 1} of {repeats}: {run['seconds']:.1f} s, "
              f"peak {run['peak_rss_mib']:.0f} MiB (+{run['peak_rise_mib']:.0f})", file=sys.stderr, flush=True)
        runs.append(run)
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    return {
        "variant": variant,
        "size": sample["size"],
        "events": sample["events"],
        "users": sample["users"],
        "items": sample["items"],
        "items_with_events": sample["items_with_events"],
        "repeats": repeats,
        "seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(median, 3),
        "min_seconds": round(min(seconds), 3),
        "max_seconds": round(max(seconds), 3),
        "median_events_per_s": round(sample["events"] / median, 1),
        "min_events_per_s": round(sample["events"] / max(seconds), 1),
        "max_events_per_s": round(sample["events"] / min(seconds), 1),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs), 1),
        "peak_rise_mib": round(max(r["peak_rise_mib"] for r in runs), 1),
        "journeys": runs[-1]["journeys"],
        "transient_clusters": runs[-1]["transient_clusters"],
    }


def print_table(results: list[dict]) -> None:
    header = (f"{'variant':9} {'events':>8} {'users':>6} {'items':>6} {'runs':>4} {'median s':>9} "
              f"{'min-max s':>15} {'events/s':>9} {'min-max events/s':>17} {'peak MiB':>9} {'rise MiB':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"{r['min_seconds']:.1f}-{r['max_seconds']:.1f}"
        rate_spread = f"{r['min_events_per_s']:.0f}-{r['max_events_per_s']:.0f}"
        print(f"{r['variant']:9} {r['events']:>8} {r['users']:>6} {r['items']:>6} {r['repeats']:>4} "
              f"{r['median_seconds']:>9.1f} {spread:>15} {r['median_events_per_s']:>9.0f} {rate_spread:>17} "
              f"{r['peak_rss_mib']:>9.0f} {r['peak_rise_mib']:>9.0f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from journeys import logs

    logs.configure()
    # Only the figures: no pipeline progress lines (and no "loading sentence encoder" per run).
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    logging.getLogger("journeys").setLevel(logging.WARNING)

    # Import the heavy modules before timing anything, so that no variant pays for them.
    import sentence_transformers  # noqa: F401
    import torch

    import pipelines.extract  # noqa: F401

    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="journeys-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    skipped = sorted(set(args.per_event_sizes) - set(args.sizes))
    if skipped:
        print(f"note: per-event sizes {skipped} are not among --sizes and are skipped", file=sys.stderr)

    results: list[dict] = []
    ratios: list[dict] = []
    try:
        for size in args.sizes:
            repeats = args.repeats_large if size >= LARGE_SIZE else args.repeats
            sample = prepare(size, args.seed, workdir / f"sample-{size}")
            print(f"size {size}: {sample['events']} events, {sample['users']} users, {sample['items']} catalogue "
                  f"items ({sample['items_with_events']} with events); {repeats} run(s) per variant",
                  file=sys.stderr, flush=True)
            per_item = measure(sample, repeats, False, workdir)
            results.append(per_item)
            if size in args.per_event_sizes:
                per_event = measure(sample, repeats, True, workdir)
                results.append(per_event)
                ratios.append({
                    "size": size,
                    "events": sample["events"],
                    "per_event_seconds": per_event["median_seconds"],
                    "per_item_seconds": per_item["median_seconds"],
                    "ratio": round(per_event["median_seconds"] / per_item["median_seconds"], 2),
                })
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    machine = {
        "cpu_count": os.cpu_count(),
        "torch_threads": TORCH_THREADS,
        "torch_num_threads_after": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "runner": "FnApiRunner (in-process, in_memory)",
        "seed": args.seed,
    }

    print()
    print_table(results)
    print()
    for r in ratios:
        print(f"per-event / per-item embedding at {r['events']} events: {r['ratio']:.2f}x "
              f"({r['per_event_seconds']:.1f} s vs {r['per_item_seconds']:.1f} s, medians)")
    if ratios:
        print()
    print(f"machine: {machine['cpu_count']} CPUs (os.cpu_count()), torch threads used = "
          f"{machine['torch_num_threads_after']}, "
          f"{machine['platform']}, Python {machine['python']}, torch {machine['torch']}, {machine['runner']}")
    print("items = catalogue rows (the per-item pipeline embeds those with events once); "
          "peak MiB = highest RSS during a run; rise MiB = peak minus RSS just before the run (largest over the runs)")

    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratios": ratios, "machine": machine},
                                              indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
