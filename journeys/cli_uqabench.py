"""``journeys uqabench``: the question set, sequence encoders, the frozen LLM, alignment, evaluation, scoring."""

from __future__ import annotations

import json

from journeys.cli_config import add_fields, settings


def run(args) -> int:
    targets = {"build": _build, "score": _score, "pretrain": _pretrain, "llm": _llm, "align": _align,
               "evaluate": _evaluate}
    return targets[args.target](args)


def _build(args) -> int:
    from eval.uqabench.questions import build
    from journeys.uqa_questions import BuildConfig

    values = settings(args, BuildConfig)
    manifest = build(args.events, args.items, args.out, BuildConfig(**values), args.journeys)
    print(json.dumps({"out": args.out, "questions": manifest["questions"], "subtasks": manifest["subtasks"],
                      "users": manifest["users"], "rejected_rows": sum(manifest["rows"]["rejected"].values())}))
    return 0


def _pretrain(args) -> int:
    import torch

    from journeys.uqa_questions import read_inputs
    from tuning.sequence_encoders import SequenceEncoderConfig, pretrain

    values = settings(args, SequenceEncoderConfig)
    config = SequenceEncoderConfig(**values)  # a bad setting fails before the data is read
    torch.set_num_threads(args.torch_threads)
    inputs = read_inputs(args.events, args.items)
    _, metadata = pretrain(inputs.events, inputs.items, config, args.out)
    print(json.dumps({"out": args.out, "encoder": config.kind, **metadata["data"], **metadata["metrics"],
                      "rejected_rows": len(inputs.dead)}))
    return 0


def _uqa_data(args):
    import torch

    from tuning.uqa_llm import load_question_data

    torch.set_num_threads(args.torch_threads)
    return load_question_data(args.questions, args.items)


def _split(args):
    from tuning.uqa_llm import SplitConfig

    if args.eval_share is None and args.split_seed is None:
        return None
    defaults = SplitConfig()
    return SplitConfig(args.eval_share if args.eval_share is not None else defaults.eval_share,
                       args.split_seed if args.split_seed is not None else defaults.split_seed)


def _llm(args) -> int:
    from tuning.uqa_llm import LlmConfig, SplitConfig, train_llm

    values = settings(args, LlmConfig)
    config = LlmConfig(**values)
    data = _uqa_data(args)
    _, _, metadata = train_llm(data, config, _split(args) or SplitConfig(), args.out)
    print(json.dumps({"out": args.out, **metadata["data"], **metadata["metrics"]}))
    return 0


def _align(args) -> int:
    from tuning.uqa_adapters import AdapterConfig
    from tuning.uqa_align import AlignConfig, align

    chosen = [name for name in ("embeddings", "encoder", "random", "no_history", "text") if getattr(args, name)]
    if len(chosen) != 1:
        raise ValueError("give exactly one user source: --embeddings (journeys encode), --encoder (uqabench "
                         "pretrain), or a baseline: --random, --no_history or --text")
    spec = {"embeddings": {"source": "embeddings", "path": args.embeddings},
            "encoder": {"source": "sequence", "path": args.encoder}, "random": {"source": "random"},
            "no_history": {"source": "none"}, "text": {"source": "text"}}[chosen[0]]
    adapter = AdapterConfig(**settings(args, AdapterConfig))
    config = AlignConfig(**settings(args, AlignConfig))
    aligned = align(_uqa_data(args), args.llm, spec, adapter, config, _split(args), args.out, args.context)
    print(json.dumps({"out": args.out, "source": aligned.source.spec, "mode": adapter.mode, "strategy": config.strategy,
                      **aligned.metadata["data"], **aligned.metadata["metrics"]}))
    return 0


def _evaluate(args) -> int:
    from journeys import io
    from tuning.uqa_align import evaluate_aligned, evaluate_baseline, load_aligned
    from tuning.uqa_answers import DEFAULT_ANSWER

    if bool(args.aligned) == bool(args.baseline):
        raise ValueError("give --aligned (a folder from `journeys uqabench align`) or --baseline none|text")
    data = _uqa_data(args)
    if args.aligned:
        if args.answer:
            raise ValueError("--answer is for baselines: an aligned folder answers in the mode it was aligned with")
        report = evaluate_aligned(load_aligned(args.aligned, data), data)
    else:
        report = evaluate_baseline(args.baseline, data, args.llm, _split(args), args.context,
                                   answer=args.answer or DEFAULT_ANSWER)
    predictions = report.pop("predictions")
    if args.paired_with:
        report["intervals"] = _paired(report, predictions, args.paired_with, data)
    if args.predictions:
        io.write_text("".join(json.dumps({"question_id": q, "prediction": p}) + "\n" for q, p in predictions.items()),
                      args.predictions)
    text = json.dumps(report, indent=2)
    if args.out:
        io.write_text(text + "\n", args.out)
    print(text)
    return 0


def _paired(report: dict, predictions: dict, path: str, data) -> dict:
    """Intervals with the paired difference against another run's predictions on the same questions."""
    from journeys.uqa_scoring import intervals

    reference = {row["question_id"]: row["prediction"] for row, _ in _prediction_rows(path) if row}
    questions = [q for q in data.questions if q["question_id"] in predictions]
    if set(reference) != set(predictions):
        raise ValueError(f"--paired_with {path} holds predictions for other questions than this run's: "
                         "compare runs on the same split")
    return intervals(questions, predictions, reference)


def _score(args) -> int:
    from journeys.uqa_questions import read_questions
    from journeys.uqa_scoring import accuracy

    predictions = {}
    for number, (row, problem) in enumerate(_prediction_rows(args.predictions), start=1):
        if row is None or not isinstance(row.get("question_id"), str) or not isinstance(row.get("prediction"), str):
            raise ValueError(f"predictions line {number}: need a JSON object with question_id and prediction text"
                             + (f" ({problem})" if problem else ""))
        if row["question_id"] in predictions:
            raise ValueError(f"predictions line {number}: a second prediction for {row['question_id']!r}")
        predictions[row["question_id"]] = row["prediction"]
    print(json.dumps(accuracy(read_questions(args.questions), predictions), indent=2))
    return 0


def _prediction_rows(path: str):
    from journeys import io

    for file in io.list_input_files(path):
        yield from io.iter_rows(file)


def add_parser(commands) -> None:
    from journeys.uqa_questions import BuildConfig

    uqabench = commands.add_parser("uqabench", help="UQABench-style question set, encoders, LLM alignment and scoring")
    targets = uqabench.add_subparsers(dest="target", required=True, metavar="TARGET")
    building = targets.add_parser(
        "build", help="build the question set",
        description="Read events and items; hold each user's last --holdout interactions out of the history; "
        "write OUT/questions.jsonl (seven sub-tasks in three dimensions, four lettered options, one gold "
        "letter, and each question's history cut), OUT/history.parquet (the events an encoder may see), "
        "OUT/dead_letter.jsonl (rejected rows with the reason) and, last, OUT/_manifest.json (counts per "
        "sub-task, skips with reasons, configuration, input fingerprints). Same input and --seed, same bytes. "
        "--journeys checks that journeys to be encoded end before each user's cut (extract them from "
        "OUT/history.parquet).")
    building.add_argument("--events", required=True, help="events file, folder or glob")
    building.add_argument("--items", required=True, help="items file, folder or glob")
    building.add_argument("--out", required=True, help="output folder")
    building.add_argument("--journeys", default=None, help="a journeys/ folder to check against the cut")
    add_fields(building, BuildConfig)
    scoring = targets.add_parser(
        "score", help="score predictions with UQABench's rule",
        description="Print JSON accuracy per sub-task, per dimension and overall. --predictions is JSONL, one "
        '{"question_id": ..., "prediction": "generated text"} per line; a prediction is correct when it starts '
        "with the gold letter (no normalisation); a missing one is wrong and counted as missing.")
    scoring.add_argument("--questions", required=True, help="questions.jsonl (or its folder)")
    scoring.add_argument("--predictions", required=True, help="predictions JSONL")

    from tuning.sequence_encoders import SequenceEncoderConfig

    pretraining = targets.add_parser(
        "pretrain", help="pre-train a sequence user encoder on next-item prediction",
        description="Train a SASRec-, GRU4Rec- or LLaMA-style encoder (--kind; each step fuses the item id with its "
        "tags and title tokens) on every user's history, the question set's cut with the same --holdout, with a "
        "full softmax over the catalogue; test on each user's first held-out item. Write OUT/sequence_encoder.pt "
        "and OUT/sequence_encoder.json (configuration, vocabularies, data hash, training loss, Recall@10 and "
        "NDCG@10 beside a most-popular baseline) and print the metrics.")
    pretraining.add_argument("--events", required=True, help="events file, folder or glob")
    pretraining.add_argument("--items", required=True, help="items file, folder or glob")
    pretraining.add_argument("--out", required=True, help="folder to write the encoder to")
    pretraining.add_argument("--torch_threads", type=int, default=1, help="torch threads (default 1)")
    add_fields(pretraining, SequenceEncoderConfig)
    _add_llm_side(targets)


def _common(parser) -> None:
    parser.add_argument("--questions", required=True, help="the question set folder (or its questions.jsonl)")
    parser.add_argument("--items", required=True, help="the item catalogue the question set was built from")
    parser.add_argument("--torch_threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--eval_share", type=float, default=None,
                        help="share of users held out for evaluation (default: the built-in LLM's split, else 0.3)")
    parser.add_argument("--split_seed", type=int, default=None, help="seed of the user split (default 0)")


def _add_llm_side(targets) -> None:
    from tuning.uqa_adapters import AdapterConfig
    from tuning.uqa_align import AlignConfig
    from tuning.uqa_answers import ANSWERS
    from tuning.uqa_llm import LlmConfig

    building = targets.add_parser(
        "llm", help="train the small built-in LLM on text prompts, then freeze it",
        description="Build a word-level tokenizer over the question set's vocabulary and a Qwen2-style decoder, "
        "train it on the training users' text-prompt questions (history written out as titles and tags, cut to "
        "--context tokens; loss on the answer letter) and save it with save_pretrained to OUT, with uqa_llm.json "
        "(configuration, user split, losses). Any Hugging Face causal model can replace it (--llm elsewhere).")
    _common(building)
    building.add_argument("--out", required=True, help="folder to write the LLM to")
    add_fields(building, LlmConfig)

    aligning = targets.add_parser(
        "align", help="train an adapter that brings user embeddings into the frozen LLM",
        description="Train on the training users' questions (no history text; the user comes through the adapter; "
        "loss on the answer) with the LLM frozen (by default the packaged SmolLM2-135M-Instruct). Sources: "
        "--embeddings (journeys encode output), --encoder (a folder from uqabench pretrain: all per-step states); "
        "baselines: --random (a fixed random vector per user), --no_history (the same vector for all: the priors), "
        "--text (the history as text, LoRA). --steps fixes the optimiser steps (the same budget for every row). "
        "Modes: soft (--soft_tokens k, 1 = UQABench), words (--soft_tokens k mixes of the LLM's own word "
        "embeddings, the words nearest the user vector in the sentence encoder's space, after --word_lead), "
        "perceiver (--latents M), xattn (gated "
        "cross-attention, gates start at zero). Strategies: adapter, encoder (+ the sequence encoder), lora.")
    _common(aligning)
    aligning.add_argument("--llm", default=None,
                          help="frozen LLM: a packaged one by name (default smollm2-135m-instruct; gemma-3-270m), a "
                          ".gguf file, a Hugging Face folder or offline id, or a folder from `uqabench llm`")
    aligning.add_argument("--out", required=True, help="folder to write the adapter to")
    aligning.add_argument("--embeddings", default=None, help="user embeddings from `journeys encode`")
    aligning.add_argument("--encoder", default=None, help="a sequence encoder from `journeys uqabench pretrain`")
    aligning.add_argument("--random", action="store_true", help="random embeddings (sanity baseline)")
    aligning.add_argument("--no_history", action="store_true",
                          help="the same zero vector for every user (no-history baseline: learns the priors)")
    aligning.add_argument("--text", action="store_true",
                          help="no adapter: the history written out, cut to --context tokens (text-prompt baseline; "
                          "needs --strategy lora)")
    aligning.add_argument("--context", type=int, default=256, help="prompt tokens at most (default 256)")
    add_fields(aligning, AdapterConfig)
    add_fields(aligning, AlignConfig)

    evaluating = targets.add_parser(
        "evaluate", help="answer the evaluation users' questions, scored as UQABench does",
        description="Answer the questions of the evaluation users (never seen in LLM training or alignment; in the "
        "aligned folder's answer mode, or a baseline's --answer) and print JSON: accuracy per sub-task, per "
        "dimension and overall (a prediction is correct when "
        "it starts with the gold letter), 95% bootstrap intervals over users, and the mean prompt tokens. Either "
        "--aligned A (a folder from align) or an untrained --baseline none|text on --llm (text: the history "
        "written out, cut to --context). --paired_with P adds the paired difference against P's predictions.")
    _common(evaluating)
    evaluating.add_argument("--aligned", default=None, help="a folder from `journeys uqabench align`")
    evaluating.add_argument("--baseline", default=None, choices=["none", "text"], help="a baseline without adapter")
    evaluating.add_argument("--llm", default=None, help="baselines: the frozen LLM (default smollm2-135m-instruct)")
    evaluating.add_argument("--answer", default=None, choices=ANSWERS,
                            help="baselines: how the LLM answers (default option-pmi; the none baseline scores "
                                 "option-pmi as option, its own reference); see `align --help`")
    evaluating.add_argument("--paired_with", default=None,
                            help="another run's --predictions on the same questions: add paired differences")
    evaluating.add_argument("--context", type=int, default=None,
                            help="text baseline: prompt tokens (default: the built-in LLM's, else 256)")
    evaluating.add_argument("--out", default=None, help="also write the JSON here")
    evaluating.add_argument("--predictions", default=None, help="write the predictions (JSONL) here")
