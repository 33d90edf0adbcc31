"""The UQABench table end to end on the built-in sample: accuracy, efficiency and a scaling sweep.

Steps, all in this process, one torch thread:

1. the sample (``journeys sample`` defaults: 200 users) and its question set (``uqabench build``);
2. the encoders: journeys extracted from the question set's ``history.parquet`` and encoded with
   the journey encoder (``journeys extract`` + ``journeys encode``); the SASRec-, GRU4Rec- and
   LLaMA-style sequence encoders pre-trained on next items (``uqabench pretrain`` defaults);
3. the frozen LLM (``uqabench llm`` defaults): trained on the training users' text prompts;
4. the accuracy table: each encoder x integration mode (soft prompt with 1 token = UQABench, soft
   prompt with k tokens, Perceiver with M latents, gated cross-attention), aligned on the training
   users and evaluated on the held-out users, beside the three baselines (no history, text prompt
   cut to the LLM's context, random embedding through a one-token soft prompt), and the LLaMA-style
   encoder's one-token soft prompt trained with the other strategies (encoder + adapter, LoRA);
5. efficiency: prompt tokens and the median forward latency (batch of one question, ``--repeats``
   runs) of the text prompt with the whole history written out and of soft prompt, Perceiver and
   cross-attention (LLaMA-style encoder over the same history + adapter + LLM) at history lengths 50,
   100 and 200, as ratios text / mode. A history shorter than the length is repeated to fill it;
   latency does not depend on the weights, so these adapters are untrained;
6. the scaling sweep: LLaMA-style encoders of each width x depth, pre-trained on the last N history
   interactions for each N, aligned with the one-token soft prompt; accuracy per dimension as a
   table and an SVG plot (interest perception against N, a line per width x depth).

Run from the repository root (about 14 minutes on 2 CPU cores; ``--quick`` about 4):

    python benchmarks/uqabench.py --out uqa-bench
    python benchmarks/uqabench.py --quick --out uqa-bench
    python benchmarks/uqabench.py --llm path/to/causal-lm --torch_threads 8 --out uqa-bench   # a pretrained LLM

It writes ``OUT/results.json`` (every figure), ``OUT/scaling.svg`` and prints the tables.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import contextlib
import io as text_io
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from eval.uqabench.questions import build  # noqa: E402
from journeys import cli, io  # noqa: E402
from journeys.sample.generator import SampleConfig, generate  # noqa: E402
from journeys.uqa_questions import DIMENSIONS, BuildConfig, read_inputs  # noqa: E402
from tuning.sequence_encoders import SequenceEncoderConfig, load_encoder, pretrain  # noqa: E402
from tuning.uqa_adapters import AdapterConfig, UserLLM, build_adapter, llm_layers, llm_width  # noqa: E402
from tuning.uqa_align import AlignConfig, align, evaluate_aligned, evaluate_baseline  # noqa: E402
from tuning.uqa_llm import LlmConfig, PromptBuilder, SplitConfig, left_pad, load_llm, load_question_data, train_llm  # noqa: E402

MODES = {"soft1": AdapterConfig(mode="soft", soft_tokens=1), "soft4": AdapterConfig(mode="soft", soft_tokens=4),
         "perceiver4": AdapterConfig(mode="perceiver", latents=4), "xattn": AdapterConfig(mode="xattn")}
SEQUENCE_KINDS = ("sasrec", "gru4rec", "llama")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet(function, *args, **kwargs):
    with contextlib.redirect_stdout(text_io.StringIO()):
        return function(*args, **kwargs)


def row(report: dict) -> dict:
    accuracy = report["accuracy"]
    return {"overall": accuracy["overall"]["accuracy"],
            **{d: accuracy["dimensions"][d]["accuracy"] for d in DIMENSIONS},
            "subtasks": {s: c["accuracy"] for s, c in accuracy["subtasks"].items()},
            "questions": accuracy["overall"]["total"], "prompt_tokens": report["prompt_tokens"]}


def prepare(out: Path) -> dict:
    paths = {"sample": out / "sample", "questions": out / "q", "journeys": out / "hx", "embeddings": out / "emb",
             "llm": out / "llm"}
    data = generate(SampleConfig())
    for name in ("events", "items"):
        io.write_table(getattr(data, name), str(paths["sample"] / f"{name}.parquet"))
    items = str(paths["sample"] / "items.parquet")
    build(str(paths["sample"] / "events.parquet"), items, str(paths["questions"]), BuildConfig())
    history = str(paths["questions"] / "history.parquet")
    log("extracting journeys from the history and encoding them (journey encoder)")
    quiet(cli.main, ["extract", "--events", history, "--items", items, "--out", str(paths["journeys"]),
                     "--runner=FnApiRunner"])
    quiet(cli.main, ["encode", "--journeys", str(paths["journeys"] / "journeys"), "--users",
                     str(paths["questions"] / "questions.jsonl"), "--out", str(paths["embeddings"]),
                     "--runner=FnApiRunner"])
    return {**{k: str(v) for k, v in paths.items()}, "items": items, "history": history}


def pretrain_sequence(paths: dict, out: Path, config: SequenceEncoderConfig, name: str) -> tuple[str, dict]:
    inputs = read_inputs(paths["history"], paths["items"])
    folder = str(out / "encoders" / name)
    _, metadata = pretrain(inputs.events, inputs.items, config, folder)
    return folder, metadata["metrics"]["test"]


def accuracy_table(data, encoders: dict, llm: str, align_config: AlignConfig, modes: dict, strategies) -> dict:
    table = {}
    for baseline in ("none", "text"):
        table[f"baseline: {'no history' if baseline == 'none' else 'text prompt'}"] = row(
            evaluate_baseline(baseline, data, llm))
    log("baselines done")
    random = align(data, llm, {"source": "random"}, MODES["soft1"], align_config)
    table["baseline: random embedding (soft1)"] = row(evaluate_aligned(random, data))
    for encoder, spec in encoders.items():
        for mode, adapter in modes.items():
            started = time.perf_counter()
            aligned = align(data, llm, spec, adapter, align_config)
            table[f"{encoder} x {mode}"] = {**row(evaluate_aligned(aligned, data)),
                                            "align_seconds": round(time.perf_counter() - started, 1)}
            log(f"{encoder} x {mode}: {table[f'{encoder} x {mode}']['interest_perception']}")
    for strategy, label in strategies:  # the other training strategies, on the LLaMA-style encoder
        aligned = align(data, llm, encoders["llama"], MODES["soft1"], replace(align_config, strategy=strategy))
        table[f"llama x soft1 ({label})"] = row(evaluate_aligned(aligned, data))
        log(f"llama x soft1 ({label}) done")
    return table


def _median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2)


@torch.no_grad()
def efficiency(data, llm_path: str, encoder_path: str, lengths: tuple[int, ...], repeats: int) -> dict:
    tokenizer, llm = load_llm(llm_path)
    encoder, _ = load_encoder(encoder_path)
    builder = PromptBuilder(tokenizer, data.items, 10**6)
    question = next(q for q in data.questions if q["subtask"] == "long_term_interests")
    own = data.histories[question["user_id"]]
    index = {item_id: i + 1 for i, item_id in enumerate(encoder.vocabulary.item_ids)}
    width, hidden, layers = encoder.config.dim, llm_width(llm), llm_layers(llm)
    positions_limit = getattr(llm.config, "max_position_embeddings", None) or getattr(llm.config, "n_positions", 10**9)
    results = {}
    for length in lengths:
        history = (own * (length // len(own) + 1))[-length:]
        text_ids, text_mask = left_pad([builder.prompt(question, history)], tokenizer.pad_token_id)
        if text_ids.shape[1] > positions_limit:  # e.g. GPT-2's 1,024: the text prompt cannot be run at all
            results[length] = {"skipped": f"the text prompt ({text_ids.shape[1]} tokens) is longer than the "
                                          f"model's {positions_limit} positions"}
            log(f"efficiency at {length} events: {results[length]['skipped']}")
            continue
        short_ids, short_mask = left_pad([builder.prompt(question, None)], tokenizer.pad_token_id)
        steps = torch.tensor([[index[i] for i in history]])
        plain = UserLLM(llm)
        text_ms = _median_ms(lambda plain=plain, ids=text_ids, mask=text_mask: plain(ids, mask), repeats)
        cell = {"text": {"prompt_tokens": text_ids.shape[1], "latency_ms": text_ms}}
        for mode in ("soft1", "perceiver4", "xattn"):
            model = UserLLM(llm, build_adapter(MODES[mode], width, hidden, layers).eval())
            prefix = {"soft1": 1, "perceiver4": 4, "xattn": 0}[mode]

            def run(model=model, steps=steps, ids=short_ids, mask=short_mask):
                states = encoder(steps)  # the encoder reads the whole history: part of the cost
                return model(ids, mask, states, torch.ones_like(steps, dtype=torch.bool))

            ms = _median_ms(run, repeats)
            if hasattr(model.adapter, "_hooks"):
                for hook in model.adapter._hooks:
                    hook.remove()
            tokens = short_ids.shape[1] + prefix
            cell[mode] = {"prompt_tokens": tokens, "latency_ms": ms,
                          "token_ratio": round(text_ids.shape[1] / tokens, 2), "latency_ratio": round(text_ms / ms, 2)}
        results[length] = cell
        log(f"efficiency at {length} events done")
    return results


def scaling(data, paths: dict, out: Path, llm: str, widths, depths, lengths, align_config, encoder_epochs) -> list:
    results = []
    for width in widths:
        for depth in depths:
            for length in lengths:
                config = SequenceEncoderConfig(kind="llama", dim=width, layers=depth, heads=2, max_len=length,
                                               epochs=encoder_epochs)
                folder, ranking = pretrain_sequence(paths, out, config, f"sweep-{width}-{depth}-{length}")
                aligned = align(data, llm, {"source": "sequence", "path": folder}, MODES["soft1"], align_config)
                results.append({"width": width, "depth": depth, "history": length, **ranking,
                                **row(evaluate_aligned(aligned, data))})
                log(f"sweep width {width} depth {depth} history {length}: {results[-1]['interest_perception']}")
    return results


def svg_plot(results: list, metric: str = "interest_perception") -> str:
    """Accuracy against history length, one line per width x depth: a small hand-written SVG."""
    lengths = sorted({r["history"] for r in results})
    values = [r[metric] for r in results]
    low, high = min(values + [0.25]) - 0.02, max(values) + 0.02
    w, h, left, bottom, top, right = 680, 320, 60, 40, 30, 150
    def x(n):
        return left + (lengths.index(n) / max(len(lengths) - 1, 1)) * (w - left - right)

    def y(v):
        return h - bottom - (v - low) / (high - low) * (h - bottom - top)

    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             'font-size="11">', f'<text x="{left}" y="16" font-size="13">{metric.replace("_", " ")} accuracy '
             'against history length N (LLaMA-style encoder, one soft token)</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0.25):.1f}" x2="{w - right}" y2="{y(0.25):.1f}" stroke="#999" '
             'stroke-dasharray="4 3"/>', f'<text x="{w - right + 4}" y="{y(0.25) + 4:.1f}" fill="#999">chance</text>']
    for n in lengths:
        parts.append(f'<text x="{x(n):.1f}" y="{h - bottom + 16}" text-anchor="middle">{n}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 6}" text-anchor="middle">history length N</text>')
    for k in range(5):
        v = low + k * (high - low) / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    series = sorted({(r["width"], r["depth"]) for r in results})
    for i, (width, depth) in enumerate(series):
        points = sorted((r["history"], r[metric]) for r in results if (r["width"], r["depth"]) == (width, depth))
        colour = colours[i % len(colours)]
        path = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        parts += [f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>' for n, v in points]
        parts.append(f'<text x="{w - right + 4}" y="{top + 14 * i + 20}" fill="{colour}">width {width}, '
                     f'depth {depth}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def print_tables(results: dict) -> None:
    short = {"sequence_understanding": "seq. underst.", "action_prediction": "action pred.",
             "interest_perception": "interest perc."}
    print("\nAccuracy on the held-out users' questions (UQABench rule: the answer starts with the gold letter)")
    print(f"{'run':44} " + " ".join(f"{short[d]:>14}" for d in DIMENSIONS) + f" {'overall':>8} {'tokens':>7}")
    for name, cells in results["accuracy"].items():
        print(f"{name:44} " + " ".join(f"{cells[d]:>14.3f}" for d in DIMENSIONS)
              + f" {cells['overall']:>8.3f} {cells['prompt_tokens']:>7.1f}")
    print("\nEfficiency: text prompt with the whole history against the user-embedding modes (batch of one)")
    print(f"{'history':>8} {'mode':>11} {'tokens':>7} {'median ms':>10} {'token ratio':>12} {'latency ratio':>14}")
    for length, cell in results["efficiency"].items():
        if "skipped" in cell:
            print(f"{length:>8} skipped: {cell['skipped']}")
            continue
        for mode, figures in cell.items():
            print(f"{length:>8} {mode:>11} {figures['prompt_tokens']:>7} {figures['latency_ms']:>10.2f} "
                  f"{figures.get('token_ratio', 1.0):>12.2f} {figures.get('latency_ratio', 1.0):>14.2f}")
    print("\nScaling sweep: LLaMA-style encoder, one-token soft prompt")
    print(f"{'width':>6} {'depth':>6} {'history':>8} {'recall@10':>10} "
          + " ".join(f"{short[d]:>14}" for d in DIMENSIONS) + f" {'overall':>8}")
    for r in results["scaling"]:
        print(f"{r['width']:>6} {r['depth']:>6} {r['history']:>8} {r['recall@10']:>10.3f} "
              + " ".join(f"{r[d]:>14.3f}" for d in DIMENSIONS) + f" {r['overall']:>8.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="work folder (sample, encoders, LLM, results)")
    parser.add_argument("--quick", action="store_true", help="fewer modes, epochs and sweep points (about 4 min)")
    parser.add_argument("--repeats", type=int, default=20, help="latency: timed forward passes per cell")
    parser.add_argument("--llm", default=None,
                        help="a Hugging Face causal LM folder (or an id in the local cache) to use as the frozen LLM "
                        "instead of training the built-in one")
    parser.add_argument("--torch_threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    out = Path(args.out)
    started = time.perf_counter()
    paths = prepare(out)
    data = load_question_data(paths["questions"], paths["items"])
    log("pre-training sequence encoders")
    encoders = {"journey": {"source": "embeddings", "path": paths["embeddings"]}}
    ranking = {}
    for kind in (("llama",) if args.quick else SEQUENCE_KINDS):
        folder, ranking[kind] = pretrain_sequence(paths, out, SequenceEncoderConfig(kind=kind), kind)
        encoders[kind] = {"source": "sequence", "path": folder}
    if args.llm:
        llm, llm_meta = args.llm, {"llm": args.llm}
    else:
        log("training the frozen LLM on text prompts")
        llm_config = LlmConfig(question_seeds=1, epochs=2) if args.quick else LlmConfig()
        _, _, llm_meta = train_llm(data, llm_config, SplitConfig(), paths["llm"])
        llm = paths["llm"]
        log(f"LLM trained: {llm_meta['metrics']}")
    align_config = AlignConfig(epochs=3) if args.quick else AlignConfig()
    modes = {k: MODES[k] for k in (("soft1", "xattn") if args.quick else MODES)}
    results = {"settings": {"quick": args.quick, "llm": llm_meta, "align": align_config.__dict__,
                            "sequence_encoders": ranking}}
    strategies = () if args.quick else (("encoder", "encoder + adapter"), ("lora", "LoRA + adapter"))
    results["accuracy"] = accuracy_table(data, encoders, llm, align_config, modes, strategies)
    results["efficiency"] = efficiency(data, llm, encoders["llama"]["path"], (50, 100, 200), args.repeats)
    widths, depths, lengths = ((32, 64), (1,), (10, 50)) if args.quick else ((32, 64), (1, 2), (10, 25, 50))
    sweep_align = replace(align_config, epochs=max(3, align_config.epochs // 2))
    results["scaling"] = scaling(data, paths, out, llm, widths, depths, lengths, sweep_align,
                                 5 if args.quick else 10)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "scaling.svg").write_text(svg_plot(results["scaling"]))
    print_tables(results)
    print(f"\nwall time {results['wall_seconds']} s; figures in {out / 'results.json'}, plot in {out / 'scaling.svg'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
