"""The UQABench table end to end on the built-in sample with a pretrained LLM: accuracy with
intervals, efficiency and a scaling sweep.

Steps, all in this process (``--torch_threads``, default 1):

1. the sample (``journeys sample`` with ``--users``) and its question set (``uqabench build``, with
   ``--practice`` more question sets drawn from the same cuts for training);
2. the encoders: journeys extracted from the question set's ``history.parquet`` and encoded with
   the journey encoder (``journeys extract`` + ``journeys encode``); the LLaMA-style (and, with
   ``--full``, SASRec- and GRU4Rec-style) sequence encoders pre-trained on next items;
3. the frozen LLM: the packaged SmolLM2-135M-Instruct by default (``--llm`` takes any other);
4. the accuracy table on the held-out users. Every trained row gets the same budget (``--steps``
   optimiser steps of ``--batch_size`` questions, AdamW ``--learning_rate``): the trained baselines
   (no history: one soft token from the same vector for every user, so it learns the priors; a
   random embedding per user through one soft token; the text prompt, the history written out and
   cut to ``--text_budget`` tokens, with LoRA rank 8 on q/k/v/o), each encoder x integration mode
   (soft prompt 1 token = UQABench, soft prompt 4 tokens, 4 word tokens (``words``: mixes of the
   LLM's own word embeddings chosen by meaning, after a short text lead), Perceiver with 4 latents,
   gated cross-attention; ``--modes`` picks some), the other strategies (LoRA + adapter on the
   journey encoder with soft1 and words4 and on the LLaMA-style one with soft1, encoder + adapter on
   the LLaMA-style one); untrained, the
   zero-shot no-history and text prompts and the journey x words4 adapter as built (its prompt is
   then the words nearest the user); and, with no LLM at all, each question answered by the
   option whose sentence embedding is nearest the journey embedding's long-term pool (what the
   embedding itself holds).
   Every row answers in the ``--answer`` mode (default ``option-pmi``: the option text the LLM finds
   most likely, less its likelihood without the user; ``letter``: UQABench's generated letter; see
   ``tuning/uqa_answers.py``). Each row has 95% bootstrap intervals over users (``--bootstrap``
   resamples) and the paired difference against the trained no-history row;
5. efficiency: prompt tokens and the median forward latency (batch of one question, ``--repeats``
   runs) of the text prompt with the whole history written out and of soft prompt, Perceiver and
   cross-attention (LLaMA-style encoder over the same history + adapter + LLM) at history lengths 50,
   100 and 200, as ratios text / mode. A history shorter than the length is repeated to fill it;
   latency does not depend on the weights, so these adapters are untrained;
6. the scaling sweep: LLaMA-style encoders of each width x depth, pre-trained on the last N history
   interactions for each N, aligned with the one-token soft prompt; accuracy per dimension as a
   table and an SVG plot (interest perception against N, a line per width x depth);
7. with ``--movielens DIR`` (ml-latest-small): the main rows on MovieLens converted with
   ``journeys convert movielens``, its first ``--movielens_users`` users.

``--rows`` runs only the accuracy rows whose name holds one of its fragments (and the no-history
row, which the paired differences need), e.g. ``--rows "journey x words4"`` after a change of
``--word_temperature`` (the words4 rows' softmax temperature). ``--sections`` picks the steps 4-7
to run; ``OUT/results.json`` is rewritten after each, so a stopped run keeps what it finished.
Run from the repository root:

    python benchmarks/uqabench.py --movielens ml-latest-small --torch_threads 2 --out uqa-bench
    python benchmarks/uqabench.py --full --out uqa-bench-full

The default run is sized for about an hour on a 2-core machine with ``--torch_threads 2`` (the
docs/uqabench.md gives the measured time and every figure): 60 users, every trained row 20 steps of 8
questions, the journey and LLaMA-style encoders with the four-word-token mode, LoRA + adapter on
the journey encoder, the text prompt cut to 128 tokens; efficiency with 3 repeats; the sweep over
widths 32, 64 x depths 1, 2 x N 10, 50 (``--sweep_widths``, ``--sweep_depths``,
``--sweep_histories``); with ``--movielens``, MovieLens' first 40 users and its main rows (the
trained baselines, the zero-shot prompts, the untrained words prompt, the no-LLM readout).
``--quick`` is the same without the sweep. ``--full`` is the whole grid at the larger sizes: 200
users, 60 steps, every encoder x mode and both strategies, the text prompt cut to 256 tokens, 20
repeats, N 10, 25, 50, and every MovieLens row: many hours on 2 cores.
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

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import torch  # noqa: E402

from eval.uqabench.questions import build  # noqa: E402
from journeys import cli, io  # noqa: E402
from journeys.embedding import Embedder  # noqa: E402
from journeys.sample.generator import SampleConfig, generate  # noqa: E402
from journeys.uqa_questions import DIMENSIONS, BuildConfig, read_inputs  # noqa: E402
from journeys.uqa_scoring import accuracy, intervals  # noqa: E402
from tuning.sequence_encoders import SequenceEncoderConfig, load_encoder, pretrain  # noqa: E402
from tuning.uqa_adapters import AdapterConfig, UserLLM, build_adapter, llm_layers, llm_width  # noqa: E402
from tuning.uqa_align import (  # noqa: E402
    AlignConfig,
    Aligned,
    align,
    eval_questions,
    evaluate_aligned,
    evaluate_baseline,
    read_embeddings,
)
from tuning.uqa_answers import ANSWERS, DEFAULT_ANSWER  # noqa: E402
from tuning.uqa_llm import PromptBuilder, SplitConfig, left_pad, llm_name, load_llm, load_question_data  # noqa: E402

MODES = {"soft1": AdapterConfig(mode="soft", soft_tokens=1), "soft4": AdapterConfig(mode="soft", soft_tokens=4),
         "words4": AdapterConfig(mode="words", soft_tokens=4),
         "perceiver4": AdapterConfig(mode="perceiver", latents=4), "xattn": AdapterConfig(mode="xattn")}
SEQUENCE_KINDS = ("sasrec", "gru4rec", "llama")
# MovieLens rows of the hour-sized run (fragments of row names; the no-history row always runs)
MOVIELENS_ROWS = ("random", "text prompt", "zero-shot", "untrained", "no LLM")
SECTIONS = ("accuracy", "efficiency", "scaling", "movielens")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def quiet(function, *args, **kwargs):
    with contextlib.redirect_stdout(text_io.StringIO()):
        return function(*args, **kwargs)


def row(report: dict, questions: list[dict] | None = None, reference: dict | None = None,
        samples: int = 1000) -> dict:
    """A table row; with the questions and a reference run's predictions, the bootstrap intervals
    and paired differences against it."""
    scores = report["accuracy"]
    cells = {"overall": scores["overall"]["accuracy"],
             **{d: scores["dimensions"][d]["accuracy"] for d in DIMENSIONS},
             "subtasks": {s: c["accuracy"] for s, c in scores["subtasks"].items()},
             "questions": scores["overall"]["total"], "prompt_tokens": report["prompt_tokens"]}
    if questions is not None:
        cells["intervals"] = intervals(questions, report["predictions"], reference, samples=samples)
    return cells


def prepare(out: Path, users: int, practice: int, threads: int, movielens: str | None = None) -> dict:
    """The data (the sample with ``users`` users, or MovieLens' first ``users`` users), its question set,
    and the journey encoder's embeddings of the question users. The pipelines get ``threads`` too:
    left to choose, they would set this process's torch threads to the machine's cores for the rest of
    the run."""
    paths = {"sample": out / "sample", "questions": out / "q", "journeys": out / "hx", "embeddings": out / "emb"}
    if movielens:
        converted = out / "converted"
        quiet(cli.main, ["convert", "movielens", "--src", movielens, "--out", str(converted)])
        events = io.read_table(str(converted / "events.parquet"))
        keep = sorted(set(events["user_id"].to_pylist()))[:users]
        io.write_table(events.filter(pc.is_in(events["user_id"], value_set=pa.array(keep))),
                       str(paths["sample"] / "events.parquet"))
        io.write_table(io.read_table(str(converted / "items.parquet")), str(paths["sample"] / "items.parquet"))
    else:
        data = generate(SampleConfig(users=users))
        for name in ("events", "items"):
            io.write_table(getattr(data, name), str(paths["sample"] / f"{name}.parquet"))
    items = str(paths["sample"] / "items.parquet")
    build(str(paths["sample"] / "events.parquet"), items, str(paths["questions"]), BuildConfig(practice=practice))
    history = str(paths["questions"] / "history.parquet")
    log("extracting journeys from the history and encoding them (journey encoder)")
    quiet(cli.main, ["extract", "--events", history, "--items", items, "--out", str(paths["journeys"]),
                     "--runner=FnApiRunner", f"--torch_threads={threads}"])
    quiet(cli.main, ["encode", "--journeys", str(paths["journeys"] / "journeys"), "--users",
                     str(paths["questions"] / "questions.jsonl"), "--out", str(paths["embeddings"]),
                     "--runner=FnApiRunner", f"--torch_threads={threads}"])
    return {**{k: str(v) for k, v in paths.items()}, "items": items, "history": history}


def pretrain_sequence(paths: dict, out: Path, config: SequenceEncoderConfig, name: str) -> tuple[str, dict]:
    inputs = read_inputs(paths["history"], paths["items"])
    folder = str(out / "encoders" / name)
    _, metadata = pretrain(inputs.events, inputs.items, config, folder)
    return folder, metadata["metrics"]["test"]


def accuracy_table(data, encoders: dict, llm, align_config: AlignConfig, modes: dict, strategies,
                   text_budget: int, samples: int, save, rows: list[str] | None = None,
                   references: dict | None = None) -> dict:
    """Every row at the same step budget, with intervals and paired differences against the trained
    no-history row; ``save(table)`` after each row, so a stopped run keeps the rows it finished.
    With ``rows`` (name fragments), only the rows whose name holds one of them, and no history.
    ``references``: the frozen LLM's no-user option scores of these questions, shared by the rows."""
    questions = eval_questions(data, SplitConfig())
    table, reference = {}, None
    references = {} if references is None else references

    def trained(spec, adapter, config, **options):
        return evaluate_aligned(align(data, llm, spec, adapter, config, references=references, **options), data,
                                references)

    def add(name, compute):
        if rows and reference is not None and not any(fragment in name for fragment in rows):
            return None
        started = time.perf_counter()
        report = compute()
        table[name] = {**row(report, questions, reference, samples),
                       "seconds": round(time.perf_counter() - started, 1)}
        cell = table[name]["intervals"]["interest_perception"]
        log(f"{name}: interest {cell['accuracy']} [{cell['low']}, {cell['high']}], overall {table[name]['overall']}")
        save(table)
        return report

    soft1 = MODES["soft1"]
    none = add("trained: no history (soft1)", lambda: trained({"source": "none"}, soft1, align_config))
    reference = none["predictions"]
    add("trained: random embedding (soft1)", lambda: trained({"source": "random"}, soft1, align_config))
    add(f"trained: text prompt <= {text_budget} tokens + LoRA",
        lambda: trained({"source": "text"}, soft1, replace(align_config, strategy="lora"), context=text_budget))
    for encoder, spec in encoders.items():
        for mode, adapter in modes.items():
            add(f"{encoder} x {mode}", lambda spec=spec, adapter=adapter: trained(spec, adapter, align_config))
    for strategy, label in strategies:  # the other strategies: LoRA on each encoder, encoder training on llama
        runs = [("journey", "soft1"), ("journey", "words4"), ("llama", "soft1")] if strategy == "lora" else \
            [("llama", "soft1")]
        for encoder, mode in runs:
            if encoder in encoders and mode in modes:
                config = replace(align_config, strategy=strategy)
                add(f"{encoder} x {mode} ({label})", lambda encoder=encoder, mode=mode, config=config:
                    trained(encoders[encoder], modes[mode], config))
    for baseline, label in (("none", "no history"), ("text", f"text prompt <= {text_budget} tokens")):
        add(f"zero-shot: {label}", lambda baseline=baseline: evaluate_baseline(
            baseline, data, llm, context=text_budget, answer=align_config.answer, references=references))
    if "words4" in modes:
        add("untrained: journey x words4", lambda: evaluate_aligned(
            untrained(data, llm, encoders["journey"], modes["words4"], align_config), data, references))
    add("no LLM: option nearest the journey embedding",
        lambda: nearest_option_readout(data, encoders["journey"]["path"], questions))
    return table


def untrained(data, llm, spec: dict, adapter_config: AdapterConfig, align_config: AlignConfig) -> Aligned:
    """An adapter as built, with no step of alignment: the words mode's prompt is then the words
    nearest the user's interests, which is worth a row of its own."""
    tokenizer, base = load_llm(llm)
    source = read_embeddings(spec["path"])
    adapter = build_adapter(adapter_config, source.width, llm_width(base), llm_layers(base), base, tokenizer).eval()
    metadata = {"llm": llm_name(llm), "split": SplitConfig().__dict__, "context": 256,
                "adapter": adapter_config.__dict__, "config": {**align_config.__dict__, "steps": 0}}
    return Aligned(tokenizer, UserLLM(base, adapter), source, metadata)


def nearest_option_readout(data, embeddings_path: str, questions: list[dict]) -> dict:
    """No LLM: each question answered with the option whose sentence embedding is closest to the
    journey encoder's long-term pool (its first ``dimension`` values live in the sentence encoder's
    space). What the embedding itself holds, to read the LLM rows against."""
    vectors = read_embeddings(embeddings_path).vectors
    embedder = Embedder()
    options = sorted({text for q in questions for text in q["options"].values()})
    option_vectors = dict(zip(options, embedder.encode(options)))
    predictions = {}
    for question in questions:
        pool = vectors[question["user_id"]][:embedder.dimension]
        scores = {letter: float(option_vectors[text] @ pool) for letter, text in question["options"].items()}
        predictions[question["question_id"]] = max(sorted(scores), key=scores.get)
    return {"accuracy": accuracy(questions, predictions), "prompt_tokens": 0, "predictions": predictions}


def median_ms(function, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls, after one warm-up call."""
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
        text_ms = median_ms(lambda plain=plain, ids=text_ids, mask=text_mask: plain(ids, mask), repeats)
        cell = {"text": {"prompt_tokens": text_ids.shape[1], "latency_ms": text_ms}}
        for mode in ("soft1", "words4", "perceiver4", "xattn"):
            model = UserLLM(llm, build_adapter(MODES[mode], width, hidden, layers, llm, tokenizer).eval())
            prefix = model.adapter.prefix_length

            def run(model=model, steps=steps, ids=short_ids, mask=short_mask):
                states = encoder(steps)  # the encoder reads the whole history: part of the cost
                return model(ids, mask, states, torch.ones_like(steps, dtype=torch.bool))

            ms = median_ms(run, repeats)
            if hasattr(model.adapter, "_hooks"):
                for hook in model.adapter._hooks:
                    hook.remove()
            tokens = short_ids.shape[1] + prefix
            cell[mode] = {"prompt_tokens": tokens, "latency_ms": ms,
                          "token_ratio": round(text_ids.shape[1] / tokens, 2), "latency_ratio": round(text_ms / ms, 2)}
        results[length] = cell
        log(f"efficiency at {length} events done")
    return results


def scaling(data, paths: dict, out: Path, llm: str, widths, depths, lengths, align_config, encoder_epochs,
            samples: int, references: dict | None = None) -> list:
    questions, results = eval_questions(data, SplitConfig()), []
    for width in widths:
        for depth in depths:
            for length in lengths:
                config = SequenceEncoderConfig(kind="llama", dim=width, layers=depth, heads=2, max_len=length,
                                               epochs=encoder_epochs)
                folder, ranking = pretrain_sequence(paths, out, config, f"sweep-{width}-{depth}-{length}")
                aligned = align(data, llm, {"source": "sequence", "path": folder}, MODES["soft1"], align_config,
                                references=references)
                results.append({"width": width, "depth": depth, "history": length, **ranking,
                                **row(evaluate_aligned(aligned, data, references), questions, samples=samples)})
                log(f"sweep width {width} depth {depth} history {length}: {results[-1]['interest_perception']}")
    return results


def svg_plot(results: list, metric: str = "interest_perception") -> str:
    """Accuracy against history length, one line per width x depth, with its 95% interval over users
    as a bar where the row has one: a small hand-written SVG. The axis starts at zero so that
    differences within noise do not look like trends."""
    lengths = sorted({r["history"] for r in results})

    def interval(r):
        cell = r.get("intervals", {}).get(metric)
        return (cell["low"], cell["high"]) if cell else (r[metric], r[metric])

    low, high = 0.0, min(1.0, max([0.25] + [interval(r)[1] for r in results]) + 0.05)
    w, h, left, bottom, top, right = 680, 320, 60, 40, 40, 150
    def x(n):
        return left + 20 + (lengths.index(n) / max(len(lengths) - 1, 1)) * (w - left - right - 40)

    def y(v):
        return h - bottom - (v - low) / (high - low) * (h - bottom - top)

    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             'font-size="11">', f'<text x="{left}" y="16" font-size="13">{metric.replace("_", " ")} accuracy '
             'against history length N (LLaMA-style encoder, one soft token)</text>',
             f'<text x="{left}" y="31" fill="#555">bars: 95% bootstrap interval over users</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0.25):.1f}" x2="{w - right}" y2="{y(0.25):.1f}" stroke="#999" '
             'stroke-dasharray="4 3"/>', f'<text x="{left + 4}" y="{y(0.25) - 4:.1f}" fill="#999">chance</text>']
    for n in lengths:
        parts.append(f'<text x="{x(n):.1f}" y="{h - bottom + 16}" text-anchor="middle">{n}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 6}" text-anchor="middle">history length N</text>')
    for k in range(5):
        v = low + k * (high - low) / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    series = sorted({(r["width"], r["depth"]) for r in results})
    for i, (width, depth) in enumerate(series):
        rows = sorted((r for r in results if (r["width"], r["depth"]) == (width, depth)), key=lambda r: r["history"])
        colour = colours[i % len(colours)]
        shift = 4 * (i - (len(series) - 1) / 2)  # side by side, so the bars do not hide each other
        path = " ".join(f"{x(r['history']) + shift:.1f},{y(r[metric]):.1f}" for r in rows)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for r in rows:
            cx, (lo, hi) = x(r["history"]) + shift, interval(r)
            parts += [f'<line x1="{cx:.1f}" y1="{y(lo):.1f}" x2="{cx:.1f}" y2="{y(hi):.1f}" stroke="{colour}"/>',
                      f'<circle cx="{cx:.1f}" cy="{y(r[metric]):.1f}" r="3" fill="{colour}"/>']
        parts.append(f'<text x="{w - right + 8}" y="{top + 14 * i + 10}" fill="{colour}">width {width}, '
                     f'depth {depth}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _accuracy_table(title: str, table: dict) -> None:
    short = {"sequence_understanding": "seq.", "action_prediction": "action", "interest_perception": "interest"}
    print(f"\n{title}\n(accuracy [95% bootstrap interval over users]; d = paired difference against the trained "
          "no-history row)")
    print(f"{'run':44} " + " ".join(f"{short[d]:>8}" for d in DIMENSIONS) + f" {'overall':>20} "
          f"{'d interest':>22} {'d overall':>22} {'tokens':>7}")
    for name, cells in table.items():
        iv = cells["intervals"]
        def diff(cell):
            if "difference" not in cell:  # the no-history row is the reference itself
                return "(reference)"
            return f"{cell['difference']:+.3f} [{cell['difference_low']:+.3f},{cell['difference_high']:+.3f}]"
        print(f"{name:44} " + " ".join(f"{cells[d]:>8.3f}" for d in DIMENSIONS)
              + f" {iv['overall']['accuracy']:.3f} [{iv['overall']['low']:.3f},{iv['overall']['high']:.3f}]"
              + f" {diff(iv['interest_perception']):>22} {diff(iv['overall']):>22} {cells['prompt_tokens']:>7.1f}")


def print_tables(results: dict) -> None:
    if "accuracy" in results:
        _accuracy_table("Accuracy on the held-out users' questions (UQABench rule: the answer starts with the "
                        "gold letter)", results["accuracy"])
    if "movielens" in results:
        _accuracy_table("MovieLens: the main rows", results["movielens"])
    if "efficiency" in results:
        _efficiency_table(results["efficiency"])
    if "scaling" in results:
        _scaling_table(results["scaling"])


def _efficiency_table(efficiency: dict) -> None:
    print("\nEfficiency: text prompt with the whole history against the user-embedding modes (batch of one)")
    print(f"{'history':>8} {'mode':>11} {'tokens':>7} {'median ms':>10} {'token ratio':>12} {'latency ratio':>14}")
    for length, cell in efficiency.items():
        if "skipped" in cell:
            print(f"{length:>8} skipped: {cell['skipped']}")
            continue
        for mode, figures in cell.items():
            print(f"{length:>8} {mode:>11} {figures['prompt_tokens']:>7} {figures['latency_ms']:>10.2f} "
                  f"{figures.get('token_ratio', 1.0):>12.2f} {figures.get('latency_ratio', 1.0):>14.2f}")


def _scaling_table(scaling: list) -> None:
    short = {"sequence_understanding": "seq. underst.", "action_prediction": "action pred.",
             "interest_perception": "interest perc."}
    print("\nScaling sweep: LLaMA-style encoder, one-token soft prompt")
    print(f"{'width':>6} {'depth':>6} {'history':>8} {'recall@10':>10} "
          + " ".join(f"{short[d]:>14}" for d in DIMENSIONS) + f" {'overall [95%]':>22}")
    for r in scaling:
        overall = r["intervals"]["overall"]
        print(f"{r['width']:>6} {r['depth']:>6} {r['history']:>8} {r['recall@10']:>10.3f} "
              + " ".join(f"{r[d]:>14.3f}" for d in DIMENSIONS)
              + f" {overall['accuracy']:.3f} [{overall['low']:.3f},{overall['high']:.3f}]")


def run_plan(args) -> dict:
    """What a run does, from its options: the default hour-sized run, ``--quick`` (the same without
    the sweep) or ``--full`` (the whole grid). A bad option raises ValueError here, before any work."""
    if args.full and args.quick:
        raise ValueError("--full and --quick are two different runs: give one")
    small = not args.full
    sections = (args.sections or ("accuracy,efficiency,movielens" if args.quick else
                                  "accuracy,efficiency,scaling,movielens")).split(",")
    modes = args.modes.split(",") if args.modes else ["words4"] if small else list(MODES)
    for name, given, known in (("--sections", sections, SECTIONS), ("--modes", modes, MODES)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"unknown {name} {', '.join(unknown)}: choose from {', '.join(known)}")
    histories = args.sweep_histories or ("10,50" if small else "10,25,50")
    try:
        sweep = tuple([int(v) for v in option.split(",")]
                      for option in (args.sweep_widths, args.sweep_depths, histories))
    except ValueError:
        raise ValueError("--sweep_widths, --sweep_depths and --sweep_histories take comma-separated integers") from None
    rows = args.rows.split(",") if args.rows else None
    return {"sections": set(sections), "modes": modes, "sweep": sweep, "rows": rows,
            "users": args.users or (60 if small else 200), "steps": args.steps or (20 if small else 60),
            "text_budget": args.text_budget or (128 if small else 256), "repeats": args.repeats or (3 if small else 20),
            "sequence_kinds": ("llama",) if small else SEQUENCE_KINDS,
            "strategies": (("lora", "LoRA + adapter"),) if small else (("encoder", "encoder + adapter"),
                                                                      ("lora", "LoRA + adapter")),
            # MovieLens' main rows: the trained encoder rows are the sample table's question
            "movielens_rows": rows or (None if args.full else list(MOVIELENS_ROWS))}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="work folder (sample, encoders, results)")
    parser.add_argument("--full", action="store_true", help="the whole grid at the larger sizes (see above)")
    parser.add_argument("--quick", action="store_true", help="the default sizes without the scaling sweep")
    parser.add_argument("--llm", default=None, help="the frozen LLM (default: the packaged smollm2-135m-instruct; "
                        "gemma-3-270m, a .gguf file, a Hugging Face folder, or a folder from `uqabench llm`)")
    parser.add_argument("--users", type=int, default=None, help="sample users (default 60; --full 200)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps of every trained row "
                        "(default 20; --full 60)")
    parser.add_argument("--batch_size", type=int, default=8, help="questions per step (default 8)")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--practice", type=int, default=4, help="practice question sets for training "
                        "(`uqabench build --practice`; default 4, 0: none)")
    parser.add_argument("--text_budget", type=int, default=None,
                        help="text prompt: tokens at most (default 128; --full 256)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of users (default 1000)")
    parser.add_argument("--repeats", type=int, default=None, help="latency: timed forward passes per cell "
                        "(default 3; --full 20)")
    parser.add_argument("--modes", default=None, help=f"integration modes of the accuracy table, comma-separated "
                        f"(default words4; --full all: {','.join(MODES)})")
    parser.add_argument("--sections", default=None, help="which of accuracy, efficiency, scaling, movielens "
                        "to run (default all; --quick accuracy,efficiency,movielens)")
    parser.add_argument("--sweep_widths", default="32,64", help="scaling sweep: encoder widths (default 32,64)")
    parser.add_argument("--sweep_depths", default="1,2", help="scaling sweep: encoder depths (default 1,2)")
    parser.add_argument("--sweep_histories", default=None,
                        help="scaling sweep: history lengths N the encoders read (default 10,50; --full 10,25,50)")
    parser.add_argument("--movielens", default=None, help="ml-latest-small folder: also the main rows on it")
    parser.add_argument("--movielens_users", type=int, default=40, help="MovieLens users (default 40)")
    parser.add_argument("--rows", default=None, help="accuracy: only the rows whose name holds one of these "
                        "comma-separated fragments (the no-history row always runs: the paired differences need it)")
    parser.add_argument("--word_temperature", type=float, default=AdapterConfig.word_temperature,
                        help=f"words4 rows: the words' softmax temperature (default {AdapterConfig.word_temperature})")
    parser.add_argument("--answer", default=DEFAULT_ANSWER, choices=ANSWERS,
                        help=f"how the LLM answers, every row (default {DEFAULT_ANSWER}; letter: UQABench's generated "
                             "letter; see tuning/uqa_answers.py)")
    parser.add_argument("--torch_threads", type=int, default=1, help="torch threads (default 1)")
    return parser


def main(argv=None) -> int:
    parser = arguments()
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    try:
        plan = run_plan(args)
    except ValueError as error:
        parser.error(str(error))
    users, steps, text_budget = plan["users"], plan["steps"], plan["text_budget"]
    out = Path(args.out)
    started = time.perf_counter()
    llm = args.llm
    align_config = AlignConfig(steps=steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               loss_questions=32, answer=args.answer)
    results = {"settings": {"full": args.full, "quick": args.quick, "llm": llm or "smollm2-135m-instruct",
                            "users": users, "align": align_config.__dict__, "text_budget": text_budget,
                            "practice": args.practice, "word_temperature": args.word_temperature,
                            "bootstrap": args.bootstrap, "split": SplitConfig().__dict__,
                            "sections": sorted(plan["sections"]), "modes": plan["modes"],
                            "sweep": dict(zip(("widths", "depths", "histories"), plan["sweep"]))}}

    def save(**parts):
        results.update(parts, wall_seconds=round(time.perf_counter() - started, 1))
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    paths = prepare(out, users, args.practice, args.torch_threads)
    data = load_question_data(paths["questions"], paths["items"])
    log(f"{len(data.questions)} questions of {users} users, {len(data.practice)} practice questions")
    log("pre-training sequence encoders")
    encoders = {"journey": {"source": "embeddings", "path": paths["embeddings"]}}
    ranking = {}
    for kind in plan["sequence_kinds"]:
        folder, ranking[kind] = pretrain_sequence(paths, out, SequenceEncoderConfig(kind=kind), kind)
        encoders[kind] = {"source": "sequence", "path": folder}
    results["settings"]["sequence_encoders"] = ranking
    rows = plan["rows"]
    results["settings"]["rows"] = rows
    modes = {k: replace(MODES[k], word_temperature=args.word_temperature) if k == "words4" else MODES[k]
             for k in plan["modes"]}
    sections = plan["sections"]
    references = {}  # the frozen LLM's no-user option scores of the sample's questions, shared by every row
    if "accuracy" in sections:
        accuracy_table(data, encoders, llm, align_config, modes, plan["strategies"], text_budget, args.bootstrap,
                       lambda table: save(accuracy=table), rows, references)
    if "efficiency" in sections:
        save(efficiency=efficiency(data, llm, encoders["llama"]["path"], (50, 100, 200), plan["repeats"]))
    if "scaling" in sections:
        widths, depths, lengths = plan["sweep"]
        save(scaling=scaling(data, paths, out, llm, widths, depths, lengths, align_config, 10, args.bootstrap,
                             references))
        (out / "scaling.svg").write_text(svg_plot(results["scaling"]))
    if "movielens" in sections and args.movielens:
        ml_paths = prepare(out / "movielens", args.movielens_users, args.practice, args.torch_threads,
                           args.movielens)
        ml_data = load_question_data(ml_paths["questions"], ml_paths["items"])
        folder, _ = pretrain_sequence(ml_paths, out / "movielens", SequenceEncoderConfig(kind="llama"), "llama")
        ml_encoders = {"journey": {"source": "embeddings", "path": ml_paths["embeddings"]},
                       "llama": {"source": "sequence", "path": folder}}
        ml_modes = {k: modes[k] for k in ("soft1", "words4") if k in modes}
        accuracy_table(ml_data, ml_encoders, llm, align_config, ml_modes, (), text_budget,
                       args.bootstrap, lambda table: save(movielens=table), plan["movielens_rows"])
    save()
    print_tables(results)
    print(f"\nwall time {results['wall_seconds']} s; figures in {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
