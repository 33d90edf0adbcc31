"""Naming throughput per strategy and batch size, against a one-call-per-journey loop.

For each strategy on the same journeys and the same base model, in this process, with one torch
thread unless told otherwise. ``default`` is what `journeys name` and `journeys run` use when no
namer is given: the fine-tuned namer with the packaged adapter and the pipeline's default options
(candidates, int8 quantisation, skipping); run it beside ``keywords`` (the default strategies) for
names/s and peak memory of both in one process:

- names/s (and names per CPU second) when the namer is given all journeys and generates in batches
  of 1, 8 and 32 prompts (``--batch_sizes``);
- names/s of the one-call loop: the namer called once per journey, which is how BERTopic's
  text-generation representation labels topics (one pipeline call per topic);
- the ratio batched / loop, measured in the same run;
- prompt tokens per journey (virtual tokens included) and generated tokens per journey, so few-shot
  (instruction + exemplars + question) can be compared with prompt-tuned (learned tokens + question);
- peak resident memory (keywords first: its peak is without an LLM loaded).

Timings are medians over ``--repeats``. The namers are loaded before timing (model loading is not
part of names/s). Throughput does not depend on how well an adapter was trained, so when no adapter
is given one is trained for a few steps on the exemplar bank just to have one to time.

Journeys come from ``--journeys DIR`` (an extract output's journeys/), or else a small built-in sample
is generated and extracted first.

    python benchmarks/name.py --journeys out/extract/journeys --limit 64
    python benchmarks/name.py --strategies keywords,few-shot,prompt-tuned,fine-tuned
    python benchmarks/name.py --model path/to/causal-lm --prompt_adapter A --finetune_adapter B
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from memory import MIB, PeakRSS

BATCH_SIZES = "1,8,32"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", help="journeys/ folder (default: extract a small built-in sample)")
    parser.add_argument("--users", type=int, default=30, help="users in the built-in sample")
    parser.add_argument("--limit", type=int, default=64, help="journeys named per measurement")
    parser.add_argument("--model", default=None,
                        help="packaged LLM name, .gguf file, folder or hub id (default: smollm2-135m-instruct)")
    parser.add_argument("--prompt_adapter", help="a prompt-tuned namer folder (default: train a stand-in)")
    parser.add_argument("--finetune_adapter", help="a fine-tuned namer folder (default: train a stand-in)")
    parser.add_argument("--strategies", default="keywords,default",
                        help="from keywords, default, few-shot, prompt-tuned, fine-tuned")
    parser.add_argument("--batch_sizes", default=BATCH_SIZES, help="prompts per generate() call, comma-separated")
    parser.add_argument("--no_loop", action="store_true", help="skip the one-call-per-journey loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train_steps", type=int, default=3,
                        help="steps of the stand-in adapters, timed (batch 8 of the exemplar bank)")
    parser.add_argument("--torch_threads", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=1,
                        help="LLM namers: answers per journey from a beam search (1: greedy), as `--candidates`")
    parser.add_argument("--json", help="also write the figures here")
    return parser.parse_args(argv)


def load_journeys(args, work: Path) -> list[dict]:
    from journeys import io

    folder = args.journeys
    if not folder:
        from journeys.sample.generator import SampleConfig, generate
        from pipelines import extract

        data = generate(SampleConfig(users=args.users, seed=0))
        for name in ("events", "items"):
            io.write_table(getattr(data, name), str(work / f"{name}.parquet"))
        extract.run(["--events", str(work / "events.parquet"), "--items", str(work / "items.parquet"),
                     "--out", str(work / "extract")], save_main_session=False)
        folder = str(work / "extract" / "journeys")
    rows = sorted(io.read_table(folder).to_pylist(), key=lambda j: (j["user_id"], j["first_ts"]))
    return rows[:args.limit]


def stand_in_adapter(method: str, base: str | None, work: Path, steps: int, threads: int) -> tuple[str, float]:
    """A few steps of training, timed: (adapter folder, seconds per optimiser step of 8 pairs)."""
    from tuning.pairs import bank_pairs
    from tuning.train import TuneConfig, train

    out = work / f"stand-in-{method}"
    result = train(bank_pairs()[:32], TuneConfig(method=method, base=base, steps=steps, batch_size=8,
                                                 validation_share=0.0), str(out), torch_threads=threads)
    return str(out), round(result.training_seconds / steps, 2)


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def measure(namer, journeys: list[dict], repeats: int, sizes: list[int], loop: bool) -> dict:
    generator = getattr(namer, "generator", None)
    figures: dict = {}
    for size in sizes:
        if generator is not None:
            namer.config = dataclasses.replace(namer.config, batch_size=size)
        cpu = time.process_time()
        seconds = statistics.median(timed(lambda: namer.name(journeys)) for _ in range(repeats))
        figures[f"batch_{size}_names_per_s"] = round(len(journeys) / seconds, 2)
        figures[f"batch_{size}_names_per_cpu_s"] = round(len(journeys) * repeats / (time.process_time() - cpu), 2)
    if generator is not None:
        generator.prompt_tokens = generator.generated_tokens = 0
        namer.name(journeys)
        figures["prompt_tokens_per_journey"] = round(generator.prompt_tokens / len(journeys), 1)
        figures["generated_tokens_per_journey"] = round(generator.generated_tokens / len(journeys), 1)
    if loop:
        seconds = statistics.median(timed(lambda: [namer.name([j]) for j in journeys]) for _ in range(repeats))
        figures["loop_names_per_s"] = round(len(journeys) / seconds, 2)
        batched = figures[f"batch_{sizes[-1]}_names_per_s"]
        figures[f"batch_{sizes[-1]}_vs_loop"] = round(batched / figures["loop_names_per_s"], 2)
    return figures


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from journeys import llms
    from journeys.embedding import Embedder
    from journeys.naming import create_namer

    torch.set_num_threads(args.torch_threads)
    strategies = args.strategies.split(",")
    results = {}
    step_seconds = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        journeys = load_journeys(args, work)
        adapters = {"prompt-tuned": args.prompt_adapter, "fine-tuned": args.finetune_adapter}
        for strategy, method in (("prompt-tuned", "prompt"), ("fine-tuned", "lora")):
            if strategy in strategies and not adapters[strategy]:
                adapters[strategy], step_seconds[strategy] = stand_in_adapter(method, args.model, work,
                                                                              args.train_steps, args.torch_threads)
        Embedder()  # load the sentence encoder once, outside the timings
        sizes = [int(s) for s in args.batch_sizes.split(",")]
        for strategy in strategies:
            if strategy == "default":  # exactly what `journeys name` runs when no namer is given
                from pipelines import name as name_pipeline

                options = {"candidates": name_pipeline.DEFAULT_CANDIDATES, "quantize": name_pipeline.DEFAULT_QUANTIZE,
                           "skip_grounded": name_pipeline.DEFAULT_SKIP_GROUNDED
                           if name_pipeline.DEFAULT_SKIP_GROUNDED <= 1 else None}
            else:
                options = {} if strategy == "keywords" else {"model": args.model, "adapter": adapters.get(strategy),
                                                             "candidates": args.candidates}
            with PeakRSS() as memory:  # the model's own memory counts: it is loaded inside
                namer = create_namer("fine-tuned" if strategy == "default" else strategy,
                                     torch_threads=args.torch_threads, **options)
                figures = measure(namer, journeys, args.repeats, sizes, not args.no_loop)
            figures["peak_rss_mib"] = round(memory.peak / MIB)
            if strategy in step_seconds:
                figures["train_seconds_per_step"] = step_seconds[strategy]
            results[strategy] = figures
            print(json.dumps({"strategy": strategy, **figures}), flush=True)
    report = {"journeys": len(journeys), "repeats": args.repeats, "model": llms.model_identity(args.model),
              "torch_threads": args.torch_threads, "candidates": args.candidates,
              "batch_sizes": [int(s) for s in args.batch_sizes.split(",")], "strategies": results}
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def print_table(report: dict) -> None:
    sizes = report["batch_sizes"]
    columns = [f"batch_{s}_names_per_s" for s in sizes] + [f"batch_{s}_names_per_cpu_s" for s in sizes] + [
        "loop_names_per_s", f"batch_{sizes[-1]}_vs_loop", "prompt_tokens_per_journey", "generated_tokens_per_journey",
        "peak_rss_mib", "train_seconds_per_step"]
    print(f"\n{report['journeys']} journeys, model {report['model']}, {report['candidates']} candidate(s) per "
          f"journey, median of {report['repeats']}")
    print("| strategy | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for strategy, figures in report["strategies"].items():
        print(f"| {strategy} | " + " | ".join(str(figures.get(c, "-")) for c in columns) + " |")


if __name__ == "__main__":
    main()
