"""Speed levers of the default LLM namer, each measured for speed and name quality in one process.

On the sample's held-out test topics (`journeys eval naming`'s reference set: journeys of users with
a test-topic match, the matched ones scored against the topic's reference name), every variant of
the fine-tuned namer with the packaged adapter names the same journeys, and the keyword namer names
them too. Per variant: names/s (wall and CPU time of the naming call, the model loaded beforehand),
the share of journeys the model was asked about, and the semantic metric (MiniLM cosine to the
reference) and exact match, with the paired difference against keywords and its 95% interval.
A variant marked "prompt per beam" is the baseline of the shared prompt pass: its beam search runs
the prompt once per candidate, as `generate` does on its own.

    python benchmarks/naming_levers.py --journeys out/extract/journeys --truth sample/truth.parquet \\
        --limit 60 --json levers.json

The machine may be shared: wall times are noisy, CPU times less so; the ratios between variants come
from one process.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import json
import time
from pathlib import Path

# Not a namer option: the beams run the prompt once each, as generate() alone does, instead of sharing
# one pass over it (the baseline of that lever; patched onto the generator, since nothing else wants it).
PROMPT_PER_BEAM = "prompt_per_beam"
# name -> LLMNamerConfig options that differ from float32 greedy with the model asked for every journey
VARIANTS = {
    "float32 greedy": {},
    "int8 greedy": {"quantize": "int8"},
    "int8 greedy 3 titles": {"quantize": "int8", "max_titles": 3},
    "int8 greedy skip>=0.6": {"quantize": "int8", "skip_grounded": 0.6},
    "int8 greedy skip>=0.5": {"quantize": "int8", "skip_grounded": 0.5},
    "int8 2 candidates": {"quantize": "int8", "candidates": 2},
    "int8 4 candidates": {"quantize": "int8", "candidates": 4},
    "int8 4 candidates (prompt per beam)": {"quantize": "int8", "candidates": 4, PROMPT_PER_BEAM: True},
    "int8 8 candidates": {"quantize": "int8", "candidates": 8},
    "int8 8 candidates (prompt per beam)": {"quantize": "int8", "candidates": 8, PROMPT_PER_BEAM: True},
    "float32 4 candidates": {"candidates": 4},
    "float32 4 candidates (prompt per beam)": {"candidates": 4, PROMPT_PER_BEAM: True},
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", required=True, help="the sample's extracted journeys/ folder")
    parser.add_argument("--truth", required=True, help="the sample's truth.parquet")
    parser.add_argument("--limit", type=int, default=60, help="scored journeys (whole users in id order)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--torch_threads", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    import torch

    from eval.naming import bootstrap, reference_scores, sample_reference_set
    from journeys import io
    from journeys.embedding import Embedder
    from journeys.naming import create_namer

    torch.set_num_threads(args.torch_threads)
    reference_set = sample_reference_set(io.read_table(args.journeys).to_pylist(), args.truth, args.limit)
    journeys, references = reference_set.journeys, reference_set.references
    scored = [i for i, r in enumerate(references) if r is not None]
    embedder = Embedder(torch_threads=args.torch_threads)

    def score(results) -> dict[str, list[float]]:
        return reference_scores([results[i].name for i in scored], [references[i] for i in scored], embedder)

    started, cpu = time.perf_counter(), time.process_time()
    keyword_results = create_namer("keywords", embedder=embedder).name(journeys)
    keyword_time = (time.perf_counter() - started, time.process_time() - cpu)
    keyword_scores = score(keyword_results)
    report = {"journeys": len(journeys), "scored": len(scored), "torch_threads": args.torch_threads,
              "variants": {"keywords": {"names_per_s": round(len(journeys) / keyword_time[0], 2),
                                        "names_per_cpu_s": round(len(journeys) / keyword_time[1], 2),
                                        "semantic": bootstrap(keyword_scores["semantic"], args.bootstrap),
                                        "exact_match": bootstrap(keyword_scores["exact_match"], args.bootstrap)}}}
    print(json.dumps({"keywords": report["variants"]["keywords"]}), flush=True)
    for variant in args.variants.split(","):
        options = dict(VARIANTS[variant])
        prompt_per_beam = options.pop(PROMPT_PER_BEAM, False)
        namer = create_namer("fine-tuned", embedder=embedder, torch_threads=args.torch_threads, **options)
        if prompt_per_beam:
            namer.generator._shared_prompt_cache = lambda batch, candidates: {}
        namer.name(journeys[:2])  # warm up: first calls allocate
        namer.generator.prompt_tokens = namer.generator.generated_tokens = 0
        started, cpu = time.perf_counter(), time.process_time()
        results = namer.name(journeys)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        values = score(results)
        figures = {
            "names_per_s": round(len(journeys) / seconds, 2), "names_per_cpu_s": round(len(journeys) / cpu_seconds, 2),
            "model_asked_share": round(sum(not (r.fallback_reason or "").endswith("not asked)") for r in results)
                                       / len(results), 3),
            "keyword_chosen_share": round(sum(r.keyword_chosen for r in results) / len(results), 3),
            "semantic": bootstrap(values["semantic"], args.bootstrap),
            "exact_match": bootstrap(values["exact_match"], args.bootstrap),
            "semantic_minus_keywords": bootstrap(
                [a - b for a, b in zip(values["semantic"], keyword_scores["semantic"])], args.bootstrap),
            "exact_match_minus_keywords": bootstrap(
                [a - b for a, b in zip(values["exact_match"], keyword_scores["exact_match"])], args.bootstrap),
        }
        report["variants"][variant] = figures
        print(json.dumps({variant: figures}), flush=True)
        del namer
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
