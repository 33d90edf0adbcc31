"""End-to-end throughput and peak memory of the extraction pipeline, against its embedding floor.

For each size (an approximate number of events) this generates the built-in synthetic sample with
as many users as give about that many events (the default sample has about 72.5 events per user)
and writes its events and items as Parquet into a work folder (in a child process, so that the
generator's memory is not counted). Each run is then a fresh child process that imports the heavy
modules (Beam, torch, sentence-transformers), runs the whole Beam pipeline
(``pipelines.extract.run``) on the local runner with no embedding cache and default options (torch
threads: auto, i.e. all cores for the one local worker), and then, in the same process, measures
the **floor**: loading the encoder from disk with all cores and embedding each distinct text the
pipeline embeds (titles and contexts of the items with events) once, in one call per kind. What
the pipeline does beyond that (reading, validating, shuffling, clustering, writing) is the ratio.

What is reported per size and variant:

- wall time of ``run()`` (``time.perf_counter``), repeated, as median, min and max, and the CPU
  time of the process during it (``time.process_time``: all its threads; the local runner works in
  this process), which other work on a busy machine disturbs much less than the wall time;
- events/s = events in the sample / wall seconds;
- floor seconds and the ratio run / floor (medians over the repeats);
- peak resident memory of the child while the run was going, sampled from ``/proc/self/status``
  (VmRSS) every 20 ms by a background thread, and the peak minus the RSS just before the run
  (imports and Python itself).

At the sizes given to ``--text-only-sizes`` the pipeline also runs with ``--representation text``
(the sentence vector alone, as before the tags and sessions blocks): the ratio default / text-only
says what the other blocks cost.

The baseline (``--embed_per_event``) embeds an item's texts once for every event on it, as a naive
pipeline would; the ratio per-event seconds / per-item seconds says how many times slower that is.

Run from the repository root:

    python benchmarks/extract.py                          # 10k and 100k events, baseline at 10k
    python benchmarks/extract.py --sizes 10000 --repeats 5
    python benchmarks/extract.py --sizes 100000 --per-event-sizes --text-only-sizes 100000 --repeats-large 3
    python benchmarks/extract.py --sizes 1000000 --per-event-sizes      # about 2 minutes on 2 cores
    python benchmarks/extract.py --sizes 10000000 --per-event-sizes --workdir W   # leave it going
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import MIB, PeakRSS

EVENTS_PER_USER = 72.5  # the default sample: about 14,500 events for 200 users
LARGE_SIZE = 50_000  # sizes from here on use --repeats-large


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="End-to-end throughput (events/s) and peak memory of the extraction pipeline, each run "
        "in a fresh process on the local runner with no embedding cache, on the synthetic sample scaled "
        "to each size, against the embedding floor measured in the same process; optionally against the "
        "per-event-embedding baseline.",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000],
                        help="approximate numbers of events; users = round(size / 72.5) (default: 10000 100000)")
    parser.add_argument("--per-event-sizes", type=int, nargs="*", default=[10_000],
                        help="sizes (among --sizes) at which also to run the --embed_per_event baseline "
                        "(slow: every event's item is embedded). Give no value to skip it (default: 10000)")
    parser.add_argument("--text-only-sizes", type=int, nargs="*", default=[],
                        help="sizes (among --sizes) at which also to run with --representation text, to see what "
                        "the other blocks cost (default: none)")
    parser.add_argument("--repeats", type=int, default=3,
                        help=f"runs per variant for sizes below {LARGE_SIZE} (default: 3)")
    parser.add_argument("--repeats-large", type=int, default=1,
                        help=f"runs per variant for sizes of {LARGE_SIZE} and more (default: 1)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (default: 0)")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="the pipeline's --torch_threads (default 0: auto); the floor always uses all cores")
    parser.add_argument("--workdir", default=None,
                        help="folder for the inputs and outputs, kept afterwards; a sample already there is "
                        "reused (default: a new temporary folder, removed at the end)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one run, in a child process
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


def prepared(size: int, seed: int, folder: Path) -> dict:
    """The sample for ``size``, generated in a child process (or read back from an earlier one)."""
    described = folder / "sample.json"
    if not described.exists():
        spec = {"prepare": {"size": size, "seed": seed, "folder": str(folder)}}
        subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True)
    return json.loads(described.read_text())


def floor_seconds(sample: dict) -> dict:
    """Load the encoder from disk with all cores and embed each distinct text the pipeline embeds
    (titles and contexts of the catalogue items that have events) once: what no pipeline can beat."""
    import pyarrow.compute as pc

    from journeys import io
    from journeys.embedding import Embedder, item_texts
    from journeys.validation import validate_item
    from pipelines.options import usable_cores

    used = set(pc.unique(io.read_table(sample["events_path"])["item_id"]).to_pylist())
    items = [item for item, _dead in map(validate_item, io.read_table(sample["items_path"]).to_pylist())
             if item is not None and item.item_id in used]
    titles = sorted({item_texts(item)[0] for item in items})
    contexts = sorted({context for _, context in map(item_texts, items) if context})
    threads = usable_cores()
    started = time.perf_counter()
    embedder = Embedder(torch_threads=threads)
    _ = embedder.dimension  # loads the model
    loaded = time.perf_counter()
    embedder.encode(titles)
    embedder.encode(contexts)
    done = time.perf_counter()
    return {"floor_seconds": done - started, "floor_load_seconds": loaded - started, "floor_threads": threads,
            "texts": len(titles) + len(contexts)}


def child_run(spec: dict) -> dict:
    """One timed run of the pipeline, then the floor, in this (fresh) process."""
    from journeys import logs

    logs.configure()
    # Only the figures: no pipeline progress lines (and no "loading sentence encoder" per run).
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    logging.getLogger("journeys").setLevel(logging.WARNING)
    # Imported before anything is timed, so the run pays for loading the model, not for imports.
    import sentence_transformers  # noqa: F401

    from pipelines import extract

    sample = spec["sample"]
    argv = ["--events", sample["events_path"], "--items", sample["items_path"], "--out", spec["out"],
            "--torch_threads", str(spec["torch_threads"])]
    if spec["per_event"]:
        argv.append("--embed_per_event")
    if spec.get("representation"):
        argv += ["--representation", spec["representation"]]
    with PeakRSS() as memory:
        started, cpu_started = time.perf_counter(), time.process_time()
        # The in-process runner needs no pickled __main__; pickling this script would only cost time.
        summary = extract.run(argv, save_main_session=False)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    events = summary["events"]
    if not events["balanced"] or events["read"] != sample["events"]:
        print(f"warning: size {sample['size']}: the summary read {events['read']} events "
              f"(balanced: {events['balanced']}), the sample has {sample['events']}", file=sys.stderr)
    shutil.rmtree(spec["out"], ignore_errors=True)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_rss_mib": memory.peak / MIB,
        "peak_rise_mib": (memory.peak - memory.before) / MIB,
        "journeys": summary["journeys"],
        "transient_clusters": summary["transient_clusters"],
        "texts_embedded": summary["items"]["texts_embedded"],
        "torch_threads": summary["config"]["torch_threads"],
        **floor_seconds(sample),
    }


def run_once(sample: dict, out: Path, per_event: bool, threads: int, representation: str | None = None) -> dict:
    spec = {"sample": sample, "out": str(out), "per_event": per_event, "torch_threads": threads,
            "representation": representation}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True,
                          stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(sample: dict, repeats: int, per_event: bool, workdir: Path, threads: int,
            representation: str | None = None) -> dict:
    variant = "per-event" if per_event else ("text-only" if representation else "per-item")
    runs = []
    for repeat in range(repeats):
        run = run_once(sample, workdir / f"out-{sample['size']}-{variant}-{repeat}", per_event, threads,
                       representation)
        print(f"  {variant:9} size {sample['size']}: run {repeat + 1} of {repeats}: {run['seconds']:.1f} s, "
              f"CPU {run['cpu_seconds']:.1f} s "
              f"(floor {run['floor_seconds']:.1f} s), peak {run['peak_rss_mib']:.0f} MiB (+{run['peak_rise_mib']:.0f})",
              file=sys.stderr, flush=True)
        runs.append(run)
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    floor = statistics.median(r["floor_seconds"] for r in runs)
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
        "median_cpu_seconds": round(statistics.median(r["cpu_seconds"] for r in runs), 3),
        "floor_seconds": round(floor, 3),
        "ratio_to_floor": round(median / floor, 2),
        "texts_embedded": runs[-1]["texts_embedded"],
        "floor_texts": runs[-1]["texts"],
        "torch_threads": runs[-1]["torch_threads"],
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs), 1),
        "peak_rise_mib": round(max(r["peak_rise_mib"] for r in runs), 1),
        "journeys": runs[-1]["journeys"],
        "transient_clusters": runs[-1]["transient_clusters"],
    }


def print_table(results: list[dict]) -> None:
    header = (f"{'variant':9} {'events':>9} {'users':>7} {'runs':>4} {'median s':>9} {'min-max s':>13} "
              f"{'events/s':>9} {'floor s':>8} {'x floor':>8} {'peak MiB':>9} {'rise MiB':>9}")
    print(header)
    print("-" * len(header))
    for r in results:
        spread = f"{r['min_seconds']:.1f}-{r['max_seconds']:.1f}"
        print(f"{r['variant']:9} {r['events']:>9} {r['users']:>7} {r['repeats']:>4} {r['median_seconds']:>9.1f} "
              f"{spread:>13} {r['median_events_per_s']:>9.0f} {r['floor_seconds']:>8.1f} {r['ratio_to_floor']:>8.2f} "
              f"{r['peak_rss_mib']:>9.0f} {r['peak_rise_mib']:>9.0f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:  # one step, in a child process: write a sample, or time one run
        spec = json.loads(args.child)
        if "prepare" in spec:
            folder = Path(spec["prepare"]["folder"])
            sample = prepare(spec["prepare"]["size"], spec["prepare"]["seed"], folder)
            (folder / "sample.json").write_text(json.dumps(sample), encoding="utf-8")
        else:
            print(json.dumps(child_run(spec)))
        return 0

    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="journeys-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    skipped = sorted(set(args.per_event_sizes) - set(args.sizes))
    if skipped:
        print(f"note: per-event sizes {skipped} are not among --sizes and are skipped", file=sys.stderr)

    results: list[dict] = []
    ratios: list[dict] = []
    block_ratios: list[dict] = []
    try:
        for size in args.sizes:
            repeats = args.repeats_large if size >= LARGE_SIZE else args.repeats
            sample = prepared(size, args.seed, workdir / f"sample-{size}-seed{args.seed}")
            print(f"size {size}: {sample['events']} events, {sample['users']} users, {sample['items']} catalogue "
                  f"items ({sample['items_with_events']} with events); {repeats} run(s) per variant",
                  file=sys.stderr, flush=True)
            per_item = measure(sample, repeats, False, workdir, args.torch_threads)
            results.append(per_item)
            if size in args.text_only_sizes:
                text_only = measure(sample, repeats, False, workdir, args.torch_threads, "text")
                results.append(text_only)
                block_ratios.append({"events": sample["events"], "default_seconds": per_item["median_seconds"],
                                     "text_only_seconds": text_only["median_seconds"],
                                     "ratio": round(per_item["median_seconds"] / text_only["median_seconds"], 3),
                                     "default_cpu": per_item["median_cpu_seconds"],
                                     "text_only_cpu": text_only["median_cpu_seconds"],
                                     "cpu_ratio": round(per_item["median_cpu_seconds"]
                                                        / text_only["median_cpu_seconds"], 3)})
            if size in args.per_event_sizes:
                per_event = measure(sample, repeats, True, workdir, args.torch_threads)
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

    import torch

    threads = results[0]["torch_threads"] if results else {}
    machine = {
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "runner": "FnApiRunner (in-process, in_memory), one fresh process per run",
        "seed": args.seed,
    }

    print()
    print_table(results)
    print()
    for r in ratios:
        print(f"per-event / per-item embedding at {r['events']} events: {r['ratio']:.2f}x "
              f"({r['per_event_seconds']:.1f} s vs {r['per_item_seconds']:.1f} s, medians)")
    for r in block_ratios:
        print(f"default blocks / text only at {r['events']} events: {r['ratio']:.3f}x wall "
              f"({r['default_seconds']:.1f} s vs {r['text_only_seconds']:.1f} s), {r['cpu_ratio']:.3f}x CPU "
              f"({r['default_cpu']:.1f} s vs {r['text_only_cpu']:.1f} s), medians")
    if ratios or block_ratios:
        print()
    print(f"machine: {machine['cpu_count']} CPUs (os.cpu_count()), pipeline torch threads: "
          f"{threads.get('threads')} ({threads.get('reason')}), {machine['platform']}, Python {machine['python']}, "
          f"torch {machine['torch']}, {machine['runner']}")
    print("floor s = model load + each distinct text embedded once with all cores, in the run's process; "
          "x floor = median s / floor s; peak MiB = highest RSS of the run's process during the run; "
          "rise MiB = peak minus RSS just before it (imports done)")

    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratios": ratios, "block_ratios": block_ratios,
                                               "machine": machine},
                                              indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
