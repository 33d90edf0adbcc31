"""The ``journeys`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from journeys import cli_uqabench, logs, stop_signals
from journeys.cli_config import settings

# Quiet, offline defaults: no hub calls for packaged models, no download progress bars.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DESCRIPTION = """\
Turn users' activity histories into persistent, named interest journeys.

  sample    write a synthetic sample with ground truth (events, items, truth)
  extract   cluster each user's events into journeys (an Apache Beam pipeline)
  name      name the journeys: keywords, few-shot, prompt-tuned or fine-tuned (a Beam pipeline)
  tune      make training pairs, and train prompt-tuned or fine-tuned namers
  eval      score extracted journeys against the truth; compare naming strategies
  report    an HTML report (and Markdown summary) of the naming comparison and the journeys
  convert   turn public data sets (MovieLens, HetRec MovieLens-2k) into the events/items format
  export    write the named journeys as a flat labels table with a manifest (a Beam pipeline)
  run       extract, name and export in one go
  uqabench  build a UQABench-style question set; pre-train sequence encoders; train the frozen LLM;
            align adapters; evaluate and score predictions
  encode    encode users as embeddings from their journeys or events (a Beam pipeline)
  verify    check an export (or a step's output) against its manifest: every file's size and SHA-256

Inputs and outputs may be local paths or gs:// URLs; inputs may be Parquet, CSV or JSONL.
Run `journeys COMMAND --help` for what each command reads and writes."""


def _sample(args) -> int:
    from journeys import io
    from journeys.sample.generator import SampleConfig, generate

    values = settings(args, SampleConfig)
    data = generate(SampleConfig(**values))
    for name in ("events", "items", "truth"):
        io.write_table(getattr(data, name), io.join(args.out, f"{name}.parquet"))
    print(json.dumps({"out": args.out, "events": data.events.num_rows, "items": data.items.num_rows,
                      "users": values.get("users", SampleConfig.users)}))
    return 0


def _extract(args, beam_args: list[str]) -> int:
    from pipelines import extract

    argv = ["--events", args.events, "--items", args.items, "--out", args.out, *beam_args]
    if args.previous:
        argv += ["--previous", args.previous]
    summary = extract.run(argv)
    if "translated" in summary:
        return _translated("extract", summary)
    events = summary["events"]
    print(json.dumps({
        "out": args.out, "users": summary["users"]["with_valid_events"], "journeys": summary["journeys"],
        "transient_clusters": summary["transient_clusters"], "events_read": events["read"],
        "events_in_journeys": events["in_journeys"], "events_rejected": events["rejected"],
        "lineage": summary["lineage"], "wall_seconds": summary["wall_seconds"],
        **({"delta_users": summary["delta"]["users"]} if "delta" in summary else {}),
    }))
    return 0


def _name(args, beam_args: list[str]) -> int:
    from pipelines import name

    previous = ["--previous", args.previous] if args.previous else []
    summary = name.run(["--journeys", args.journeys, "--out", args.out, *_naming_options(args), *previous,
                        *beam_args])
    if "translated" in summary:
        return _translated("name", summary)
    keys = ("journeys_read", "named", "failed", "sent_to_namer", "carried_over", "wall_seconds")
    print(json.dumps({k: summary[k] for k in keys} | {"out": args.out}))
    if not summary["journeys_read"]:
        _note("name", f"'{args.journeys}' holds no journeys (its extraction found none: its users/ says why each "
                      "user has none), so nothing was named")
    return 0


def _note(command: str, text: str) -> None:
    """A result that is correct but empty says so on stderr, so that it does not pass for a normal run."""
    print(f"journeys {command}: note: {text}", file=sys.stderr)


def _tune_pairs(args) -> int:
    from journeys import io
    from tuning.pairs import build_pairs, write_pairs

    sample = {"truth": io.join(args.sample, "truth.parquet"), "items": io.join(args.sample, "items.parquet")} \
        if args.sample else {}
    movielens = {"user_tags": io.join(args.movielens, "user_tags.parquet"),
                 "movielens_items": io.join(args.movielens, "items.parquet")} if args.movielens else {}
    pairs, counts = build_pairs(**sample, **movielens, bank=not args.no_bank)
    write_pairs(pairs, args.out)
    print(json.dumps({"out": args.out, **counts}))
    return 0


def _tune(args) -> int:
    from tuning.pairs import read_pairs
    from tuning.train import TuneConfig, train

    values = settings(args, TuneConfig)
    if args.target == "prompt":
        values["method"] = "prompt"
    threads = values.pop("torch_threads", None)
    result = train(read_pairs(args.train), TuneConfig(**values), args.out, torch_threads=threads)
    metadata = result.metadata
    print(json.dumps({"out": args.out, "method": metadata["method"], "base_model": metadata["base_model"],
                      "pairs": metadata["pairs"], **metadata["metrics"],
                      "training_seconds": result.training_seconds}))
    return 0


_JOURNEYS_HINT = "pass the journeys/ folder written by `journeys extract`"


def _check_truth(path: str) -> None:
    from journeys import inputs, schema

    inputs.check_dataset(path, schema.TRUTH, "truth", "pass the truth.parquet written by `journeys sample`")


def _eval_extraction(args) -> int:
    from eval.extraction import evaluate, evaluate_groups, name_contains_tag, tag_groups
    from journeys import inputs, io, schema
    from journeys.validation import validate_event, validate_item

    if bool(args.truth) == bool(args.groups):
        raise ValueError("give one reference: --truth (a sample's planted journeys) or --groups (user tags)")
    if args.named and not args.groups:
        raise ValueError("--named needs --groups: names are scored against the tags of the groups they match")
    inputs.check_dataset(args.journeys, schema.JOURNEYS, "journeys", _JOURNEYS_HINT)
    if args.named:
        inputs.check_dataset(args.named, schema.NAMED_JOURNEYS, "named journeys",
                             "pass the named/ folder written by `journeys name`")
    if args.truth:
        _check_truth(args.truth)
    journeys = io.read_table(args.journeys, columns=["user_id", "item_ids"])
    pairs = zip(journeys["user_id"].to_pylist(), journeys["item_ids"].to_pylist())
    if args.truth:
        print(json.dumps(evaluate(pairs, io.read_table(args.truth)), indent=2))
        return 0
    if not (args.events and args.items):
        raise ValueError("--groups needs --events and --items: the histories the journeys came from")
    inputs.check_inputs(args.events, args.items)
    inputs.check_columns(args.groups, ("user_id", "item_id", "tag"), "reference groups")
    histories: dict[str, set[str]] = {}
    for row in io.read_table(args.events, columns=["user_id", "item_id", "timestamp"]).to_pylist():
        event, _ = validate_event(row)
        if event:
            histories.setdefault(event.user_id, set()).add(event.item_id)
    item_tags = {}
    for row in io.read_table(args.items).to_pylist():
        item, _ = validate_item(row)
        if item:
            item_tags[item.item_id] = item.tags
    groups = tag_groups(io.read_table(args.groups, columns=["user_id", "item_id", "tag"]).to_pylist(), histories,
                        args.min_group_items)
    report = evaluate_groups(pairs, groups, histories, item_tags)
    if args.named:
        named = io.read_table(args.named, columns=["user_id", "item_ids", "name"]).to_pylist()
        report["names"] = name_contains_tag(((n["user_id"], n["item_ids"], n["name"]) for n in named), groups)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


def _eval_naming(args) -> int:
    from eval.naming import evaluate_naming, movielens_reference_set, sample_reference_set
    from journeys import io, llms
    from journeys.embedding import Embedder
    from journeys.naming import create_namer

    if bool(args.truth) == bool(args.movielens):
        raise ValueError("give one reference set: --truth (with --journeys) or --movielens")
    adapters = {"prompt-tuned": args.prompt_adapter, "fine-tuned": args.finetune_adapter}
    if args.movielens and args.movielens_groups == "all":
        _check_never_trained_on_movielens(adapters[s] for s in args.strategies.split(",") if adapters.get(s))
    embedder = Embedder(args.encoder or "default", torch_threads=args.torch_threads)
    if args.truth:
        if not args.journeys:
            raise ValueError("--truth needs --journeys: the extracted journeys to name")
        from journeys import inputs, schema

        inputs.check_dataset(args.journeys, schema.JOURNEYS, "journeys", _JOURNEYS_HINT)
        _check_truth(args.truth)
        journeys = io.read_table(args.journeys).to_pylist()
        reference_set = sample_reference_set(journeys, args.truth, args.limit)
    else:
        reference_set = movielens_reference_set(args.movielens, embedder, args.limit, args.movielens_groups)
    namers = {}
    for strategy in args.strategies.split(","):
        options = {"encoder": args.encoder or "default", "embedder": embedder, "torch_threads": args.torch_threads}
        if strategy != "keywords":
            options |= {"model": args.model, "adapter": adapters.get(strategy), "max_titles": args.max_titles,
                        "prompt_inputs": args.prompt_inputs, "candidates": args.candidates,
                        "keyword_candidate": not args.model_answers_only, "quantize": args.quantize,
                        "skip_grounded": args.skip_grounded}
        namers[strategy] = create_namer(strategy, **options)
    report = evaluate_naming(reference_set, namers, embedder, args.bootstrap, args.whole_history)
    report["settings"] = {"max_titles": args.max_titles, "prompt_inputs": args.prompt_inputs,
                          "candidates": args.candidates, "model_answers_only": args.model_answers_only,
                          "quantize": args.quantize, "skip_grounded": args.skip_grounded,
                          "torch_threads": args.torch_threads,
                          "movielens_groups": args.movielens_groups if args.movielens else None,
                          "whole_history": args.whole_history, "model": llms.model_identity(args.model),
                          "prompt_adapter": args.prompt_adapter, "finetune_adapter": args.finetune_adapter}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.out:
        io.write_text(text + "\n", args.out)
    print(text)
    return 0


def _check_never_trained_on_movielens(adapter_folders) -> None:
    """Scoring every MovieLens tag group is fair only for adapters that never saw one: one trained on
    MovieLens pairs would be scored on its own training groups."""
    from journeys.naming.generation import read_adapter_metadata

    for folder in adapter_folders:
        trained = (read_adapter_metadata(folder).get("sources") or {}).get("movielens", 0)
        if trained:
            raise ValueError(f"{folder} was trained on {trained} MovieLens pairs, so --movielens_groups all would "
                             "score it on its own training groups: use --movielens_groups held-out, or an adapter "
                             "tuned on pairs made without --movielens")


def _read_json_report(path: str, made_by: str, needs: str) -> dict:
    """A JSON file another command wrote, or a ValueError naming the file and what it should be."""
    from journeys import io

    fs, local = io.url_to_fs(path)
    if not fs.exists(local):
        raise FileNotFoundError(f"'{path}' does not exist")
    try:
        with fs.open(local, "r", encoding="utf-8") as handle:
            report = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"'{path}' is not a JSON file ({err}): pass a file written by {made_by}") from None
    if not isinstance(report, dict) or needs not in report:
        raise ValueError(f"'{path}' is not a report of {made_by} (no '{needs}' in it)")
    return report


def _report(args) -> int:
    from eval.report import render
    from journeys import inputs, io, schema

    evaluations = [_read_json_report(path, "`journeys eval naming --out`", "strategies") for path in args.eval or []]
    extraction = _read_json_report(args.extraction, "`journeys eval extraction`", "ari") \
        if args.extraction else None
    if args.named:
        inputs.check_dataset(args.named, schema.NAMED_JOURNEYS, "named journeys",
                             "pass the named/ folder written by `journeys name`")
    named = io.read_table(args.named).to_pylist() if args.named else []
    if not (evaluations or extraction or named):
        raise ValueError("nothing to report: give --eval, --extraction or --named")
    page, markdown = render(evaluations, extraction, named, args.users)
    markdown_path = args.out.rsplit(".", 1)[0] + ".md"
    io.write_text(page, args.out)
    io.write_text(markdown + "\n", markdown_path)
    print(json.dumps({"html": args.out, "markdown": markdown_path}))
    return 0


def _convert_movielens(args) -> int:
    from journeys.movielens import convert

    print(json.dumps({"out": args.out, **convert(args.src, args.out)}))
    return 0


def _convert_hetrec(args) -> int:
    from journeys.hetrec import convert

    if args.min_items < 1:
        raise ValueError(f"--min_items must be 1 or more, not {args.min_items}")
    print(json.dumps({"out": args.out, **convert(args.src, args.out, args.min_items)}))
    return 0


def _export(args, beam_args: list[str]) -> int:
    from pipelines import export

    argv = ["--named", args.named, "--out", args.out, "--format", args.format, *beam_args]
    for option in ("lineage", "previous"):
        if getattr(args, option):
            argv += [f"--{option}", getattr(args, option)]
    if args.include_centroid:
        argv.append("--include_centroid")
    manifest = export.run(argv)
    if "translated" in manifest:
        return _translated("export", manifest)
    print(json.dumps({"out": args.out, **{k: manifest[k] for k in ("rows", "users", "format", "wall_seconds")}}))
    if not manifest["rows"]:
        _note("export", f"'{args.named}' holds no named journeys, so the export holds no labels")
    return 0


def _verify(args) -> int:
    """Every file against the record; each difference on its own line (stderr), exit 1 if any."""
    from journeys.verify import verify

    report = verify(args.folder)
    for line in report["problems"]:
        print(f"journeys verify: {line}", file=sys.stderr)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


def _encode(args, beam_args: list[str]) -> int:
    from pipelines import encode

    argv = ["--out", args.out, "--user_encoder", args.encoder, *beam_args]
    for option in ("journeys", "events", "sequence_model", "users"):
        if getattr(args, option):
            argv += [f"--{option}", getattr(args, option)]
    summary = encode.run(argv)
    if "translated" in summary:
        return _translated("encode", summary)
    print(json.dumps({"out": args.out, "encoder": summary["encoder"], "users": summary["users"],
                      "wall_seconds": summary["wall_seconds"]}))
    if not summary["users"]["read"]:
        _note("encode", "no user to encode: the input holds no rows for any user (and --users names none)")
    return 0


def _translated_text(described: dict) -> str:
    staged = sorted({name for env in described.get("environments", []) for name in env["staged"]})
    images = sorted({env["container_image"] for env in described.get("environments", []) if env["container_image"]})
    return (f"{len(described.get('steps', []))} steps, {described.get('transforms', 0)} transforms"
            + (f"; container {', '.join(images)}" if images else "")
            + (f"; staged {', '.join(staged)}" if staged else "") + f"; {described['wall_seconds']} s")


def _translated(command: str, described: dict) -> int:
    """One line for a pipeline that was translated, not run: a dry run or a staged template."""
    if described["translated"] == "dry_run":
        print(f"journeys {command}: dry run: translated for the {described['runner']} ({_translated_text(described)}); "
              "no job was submitted and nothing was written")
    else:
        print(f"journeys {command}: template staged at {described['template_location']} "
              f"({_translated_text(described)}); nothing was run: launch it with `gcloud dataflow jobs run NAME "
              f"--gcs-location {described['template_location']}`")
    return 0


def _naming_options(args) -> list[str]:
    argv = ["--namer", args.namer]
    for option in ("model", "adapter", "encoder"):
        if getattr(args, option, None):
            argv += [f"--{option}", getattr(args, option)]
    return argv


def _check_namer(args) -> None:
    """Refuse a namer that cannot run, before hours of extraction rather than after."""
    from journeys.naming import NAMERS

    if args.namer not in NAMERS:
        raise ValueError(f"unknown namer '{args.namer}': the name step supports {', '.join(NAMERS)}")
    if args.namer == "prompt-tuned" and not args.adapter:
        raise ValueError(f"the {args.namer} namer needs --adapter: a folder made by `journeys tune`")
    adapter = args.adapter
    if args.namer == "fine-tuned" and not adapter:
        from journeys.adapters import DEFAULT_ADAPTER

        adapter = DEFAULT_ADAPTER  # the packaged one: its weights are checked here, before any work
    if adapter:
        from journeys.naming.llm import check_adapter

        check_adapter(args.namer, adapter)
    if args.namer != "keywords":
        from journeys import llms
        from journeys.naming.generation import base_of

        llms.check_available(base_of(args.model, adapter))


def _run(args, beam_args: list[str]) -> int:
    """extract -> name -> export, each step's own pipeline in turn; Beam options go to all three."""
    from journeys import io, previous
    from pipelines import arguments, export, extract, name

    _check_namer(args)
    extract_out, named_out = io.join(args.out, "extract"), io.join(args.out, "named")
    export_out = args.export_to or io.join(args.out, "export")
    lineage = ["--lineage", io.join(extract_out, "lineage")]
    if args.previous:  # every step's part of the earlier run is checked before any work
        previous.previous_named(args.previous)
        previous.previous_labels(args.previous_export or args.previous)
        extract_previous = ["--previous", args.previous]
        name_previous = ["--previous", args.previous]
        export_previous = ["--previous", args.previous_export or args.previous]
    else:
        extract_previous = name_previous = export_previous = []
    if arguments.given_options(beam_args).count("--template_location"):
        raise ValueError("--template_location stages one pipeline: stage each step's template with its own "
                         "command (journeys extract, name, export)")
    extracted = extract.run(["--events", args.events, "--items", args.items, "--out", extract_out,
                             *extract_previous, *beam_args])
    # A dry run writes nothing, so the later steps' inputs are not there to check: they are translated
    # all the same, each as its own job.
    dry = "translated" in extracted
    named = name.run(["--journeys", io.join(extract_out, "journeys"), "--out", named_out, *_naming_options(args),
                      *name_previous, *beam_args], inputs_written=not dry)
    manifest = export.run(["--named", io.join(named_out, "named"), "--out", export_out,
                           "--format", args.export_format, *lineage, *export_previous, *beam_args],
                          inputs_written=not dry)
    if dry:
        steps = {"extract": extracted, "name": named, "export": manifest}
        print(f"journeys run: dry run: translated for the {extracted['runner']}, each step as its own job: "
              + "; ".join(f"{step} ({_translated_text(d)})" for step, d in steps.items())
              + "; no job was submitted and nothing was written")
        return 0
    print(json.dumps({
        "out": args.out,
        "extract": {"out": extract_out, "events_read": extracted["events"]["read"],
                    "events_rejected": extracted["events"]["rejected"], "journeys": extracted["journeys"],
                    **({"delta_users": extracted["delta"]["users"]} if "delta" in extracted else {})},
        "name": {"out": named_out, "named": named["named"], "failed": named["failed"],
                 "sent_to_namer": named["sent_to_namer"], "carried_over": named["carried_over"]},
        "export": {"out": export_out, "rows": manifest["rows"], "users": manifest["users"],
                   "status": manifest["status"]},
        "wall_seconds": round(extracted["wall_seconds"] + named["wall_seconds"] + manifest["wall_seconds"], 2),
    }))
    return 0


class CommandParser(argparse.ArgumentParser):
    """A command's parser. For a pipeline command (``pipeline``), --help also lists every option of
    the pipeline's option classes, grouped as there, with defaults: they are not arguments of this
    parser (they go on to the pipeline, where they are checked), so they are read from the option
    classes only when help is asked for, and no pipeline is built."""

    def __init__(self, *args, pipeline: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pipeline = pipeline

    def format_help(self) -> str:
        if self.pipeline is None:
            return super().format_help()
        from pipelines.arguments import option_groups

        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        own = {s for action in self._actions for s in action.option_strings}
        sections = [(group.title, group._group_actions) for group in self._action_groups]  # noqa: SLF001
        for title, actions in option_groups(self.pipeline):
            sections.append((f"pipeline options: {title}", [_with_default(a) for a in actions
                                                             if not own & set(a.option_strings)]))
        for title, actions in sections:
            if actions:
                formatter.start_section(title)
                formatter.add_arguments(actions)
                formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()


def _with_default(action: argparse.Action) -> argparse.Action:
    """The action, its help ending with its default where it has one and does not say it already."""
    import copy

    text = action.help or ""
    if action.default in (None, False, argparse.SUPPRESS) or ("default" in text and str(action.default) in text):
        return action
    shown = copy.copy(action)
    shown.help = f"{text} (default {action.default})".replace("%", "%%")
    return shown


def build_parser() -> argparse.ArgumentParser:
    from journeys.naming import NAMERS
    from journeys.sample.generator import SampleConfig

    parser = argparse.ArgumentParser(prog="journeys", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="also log Beam and library details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    sample = commands.add_parser(
        "sample", help="write a synthetic sample with ground truth",
        description="Write OUT/events.parquet, OUT/items.parquet and OUT/truth.parquet: users with 1-5 "
        "persistent journeys, transient one-off interests and noise clicks over a catalogue of 160+ "
        "topics in 8 domains. truth.parquet gives each event's planted interest, its kind "
        "(persistent | transient | noise), the topic's reference name and its train/test split.")
    sample.add_argument("--out", required=True, help="output folder (local or gs://)")
    for f in fields(SampleConfig):
        sample.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default),
                            default=None, help=f"{f.metadata['help']} (default {f.default})")

    extract = commands.add_parser(
        "extract", help="extract persistent journeys with an Apache Beam pipeline",
        description="Read events (user_id, item_id, timestamp, [weight], [event_type]) and items "
        "(item_id, title, [tags], [category], [text]); write OUT/journeys/ (Parquet: one row per "
        "journey with items, time span, salient terms, representative titles, centroid, "
        "persistence), OUT/transient/ (clusters that failed the persistence filter, with the reason), "
        "OUT/dead_letter/ (rejected rows, with the reason) and OUT/summary.json (counts that add up, "
        "wall time). Every option is listed below; on Dataflow add e.g. --runner DataflowRunner --project P "
        "--region R --temp_location gs://B/tmp --setup_file ./setup.py (--dry_run true translates the job "
        "offline and stops).", pipeline="extract")
    extract.add_argument("--events", required=True, help="events file, folder or glob")
    extract.add_argument("--items", required=True, help="items file, folder or glob")
    extract.add_argument("--out", required=True, help="output folder")
    extract.add_argument("--previous", default=None,
                         help="an earlier extract (or run) folder: journeys that continue keep their ids, "
                         "first-seen times and versions; OUT/lineage/ says how the journeys descend from it "
                         "(--min_overlap 0.5, --min_similarity 0.5)")

    naming = commands.add_parser(
        "name", help="name extracted journeys (a Beam pipeline)",
        description="Read OUT/journeys (from extract); write DIR/named/ (each journey with its name, the "
        "strategy, model, grounding score and fallback reason), DIR/dead_letter/ (journeys whose naming "
        "failed, with the error) and DIR/summary.json. LLM answers that fail validation are replaced by the "
        "keywords name, with the reason. Every option is listed below.", pipeline="name")
    naming.add_argument("--journeys", required=True, help="the journeys/ folder written by extract")
    naming.add_argument("--out", required=True, help="output folder")
    naming.add_argument("--namer", default="keywords", choices=NAMERS,
                        help="naming strategy (default: keywords; fine-tuned without --adapter uses the namer adapter "
                        "that ships in the package, at several times the time)")
    naming.add_argument("--model", default=None,
                        help="LLM namers: a packaged LLM (smollm2-135m-instruct, gemma-3-270m), a .gguf file, or a "
                        "Hugging Face causal LM folder or id (default: smollm2-135m-instruct for few-shot, the "
                        "adapter's own base for tuned namers)")
    naming.add_argument("--adapter", default=None,
                        help="prompt-tuned / fine-tuned: a folder from `journeys tune` (default for fine-tuned: the "
                        "packaged smollm2-namer)")
    naming.add_argument("--encoder", default=None,
                        help="sentence encoder for keywords, grounding and exemplars (default: the packaged "
                        "MiniLM; must be the model the journeys were extracted with)")
    naming.add_argument("--previous", default=None,
                        help="an earlier name (or run) folder: a journey that kept its id keeps its name without "
                        "calling the namer unless it changed enough (--max_new_share 0.5, --min_carry_grounding 0.3)")

    tune = commands.add_parser("tune", help="train a namer: training pairs, prompt tuning, fine-tuning")
    tunes = tune.add_subparsers(dest="target", required=True, metavar="TARGET")
    pairs = tunes.add_parser(
        "pairs", help="write training pairs (titles -> name) as JSONL",
        description="Write OUT (JSONL, one {titles, keywords, name, source} per line) from the curated "
        "exemplar bank, a sample's train topics (--sample DIR written by `journeys sample`) and MovieLens "
        "user tags (--movielens DIR written by `journeys convert movielens`: a tag one user gave to 3 or "
        "more movies names that group). The sample's test topics never enter the pairs.")
    pairs.add_argument("--out", required=True, help="pairs file to write (.jsonl)")
    pairs.add_argument("--sample", help="a folder written by `journeys sample`")
    pairs.add_argument("--movielens", help="a folder written by `journeys convert movielens`")
    pairs.add_argument("--no-bank", dest="no_bank", action="store_true", help="leave out the exemplar bank")
    from tuning.train import TuneConfig

    for target, method_help in (("prompt", "PEFT prompt tuning: learned virtual tokens, frozen base"),
                                ("finetune", "LoRA (default) or full fine-tuning (--method full)")):
        parser_ = tunes.add_parser(
            target, help=method_help,
            description=f"{method_help}. Train from --train PAIRS (JSONL of titles -> name) and write OUT: the "
            "adapter (or whole model), its tokenizer and journeys_adapter.json (base model, prompt template, "
            "training-data hash, metrics). Use it with `journeys name --namer "
            f"{'prompt-tuned' if target == 'prompt' else 'fine-tuned'} --adapter OUT`.")
        parser_.add_argument("--train", required=True, help="training pairs (JSONL), e.g. from `journeys tune pairs`")
        parser_.add_argument("--out", required=True, help="folder to write the tuned namer to")
        parser_.add_argument("--torch_threads", type=int, default=None, help="CPU threads (default: torch's)")
        skip = {"prompt": ("method", "lora_rank"), "finetune": ("virtual_tokens",)}[target]
        for f in fields(TuneConfig):
            if f.name in skip:
                continue
            kind = str if f.name in ("base", "method", "template") else float if f.name in (
                "learning_rate", "validation_share") else int
            parser_.add_argument(f"--{f.name}", type=kind, default=None,
                                 choices=("lora", "full") if f.name == "method" else None,
                                 # finetune offers lora | full; prompt tuning has its own command
                                 help=("lora (LoRA updates) | full (every weight)" if f.name == "method"
                                       else f.metadata["help"])
                                 + ("" if f.default is None else f" (default {f.default})"))

    evaluation = commands.add_parser("eval", help="evaluate outputs against ground truth")
    evals = evaluation.add_subparsers(dest="target", required=True, metavar="TARGET")
    ev_extraction = evals.add_parser(
        "extraction", help="score extracted journeys against a sample's truth or users' own tags",
        description="Print JSON. With --truth (a sample's planted journeys): ARI and NMI of event "
        "assignments, journey recall and precision (a planted persistent journey is found when an "
        "extracted one matches its events with Jaccard >= 0.5), transient interests reported as journeys, "
        "and journeys per user. With --groups (a table of user_id, item_id, tag, such as the "
        "user_tags.parquet of `journeys convert movielens` or the groups.parquet of `journeys convert "
        "hetrec-movielens`): each tag a user gave to --min_group_items or more items of their history is a "
        "reference group; recall of groups at Jaccard >= 0.5, mean best Jaccard, the largest journey's share "
        "of each heavy user's items and journeys per user, beside three baselines computed in the same run "
        "(the whole history as one journey; one journey per item tag or genre; the best partition, a greedy "
        "disjoint split of each user's items into their own groups, largest first: about the most that "
        "disjoint journeys can recover). With --named as well: for each group a journey recovers, whether "
        "the name of its best-matching journey contains the tag as whole words.")
    ev_extraction.add_argument("--journeys", required=True, help="the journeys/ folder written by extract")
    ev_extraction.add_argument("--truth", help="truth.parquet written by sample")
    ev_extraction.add_argument("--groups", help="reference groups: a table with user_id, item_id and tag")
    ev_extraction.add_argument("--events", help="with --groups: the events the journeys were extracted from")
    ev_extraction.add_argument("--items", help="with --groups: the item catalogue (its tags make a baseline)")
    ev_extraction.add_argument("--min_group_items", type=int, default=3,
                               help="with --groups: fewest items of a user's history in a reference group (3)")
    ev_extraction.add_argument("--named", help="with --groups: the named/ folder written by `journeys name` (scores "
                               "whether the names of matching journeys contain the tag)")

    ev_naming = evals.add_parser(
        "naming", help="compare naming strategies on a reference set",
        description="Name the same journeys with each strategy and print (and --out) JSON: per strategy, "
        "SacreBLEU (sentence, effective order), ROUGE-L, chrF, exact match and MiniLM cosine against "
        "reference names; specificity, grounding, duplicates within a user, fallback rate and safety "
        "flags without references; names/s and tokens per name; each with a 95% bootstrap interval and "
        "the paired difference against the keywords namer. Reference sets: the sample's held-out test "
        "topics (--journeys and --truth) or MovieLens tag groups (--movielens DIR from "
        "`journeys convert movielens`; held out of training, or all with --movielens_groups all).")
    ev_naming.add_argument("--journeys", help="journeys/ folder extracted from the sample")
    ev_naming.add_argument("--truth", help="the sample's truth.parquet")
    ev_naming.add_argument("--movielens", help="a folder written by `journeys convert movielens`")
    ev_naming.add_argument("--movielens_groups", default="held-out", choices=["held-out", "all"],
                           help="MovieLens: the one group in five held out of training pairs, or all groups (only "
                           "for adapters tuned without MovieLens pairs; checked)")
    ev_naming.add_argument("--strategies", default="keywords,few-shot", help="comma-separated namers")
    ev_naming.add_argument("--model", default=None,
                           help="LLM namers' model: a packaged LLM, .gguf file, folder or hub id "
                           "(default: the adapter's base, else smollm2-135m-instruct)")
    ev_naming.add_argument("--prompt_adapter", help="adapter folder for prompt-tuned")
    ev_naming.add_argument("--finetune_adapter", help="adapter folder for fine-tuned")
    ev_naming.add_argument("--encoder", default=None, help="sentence encoder (default: the packaged MiniLM)")
    ev_naming.add_argument("--max_titles", type=int, default=10, help="ablation: titles per prompt (5, 10, 20)")
    ev_naming.add_argument("--prompt_inputs", default="both", choices=["titles", "terms", "both"],
                           help="ablation: what the prompt shows")
    ev_naming.add_argument("--candidates", type=int, default=1,
                           help="LLM namers: answers per journey from a beam search; the valid one closest to the "
                           "journey is kept (1: greedy)")
    ev_naming.add_argument("--model_answers_only", action="store_true",
                           help="LLM namers: keep the model's answer even where the keyword name is closer to the "
                           "journey (measures the model alone)")
    ev_naming.add_argument("--quantize", default="none", choices=["none", "int8"],
                           help="LLM namers: int8 dynamic quantisation of the model's Linear layers (as `journeys "
                           "name` does by default)")
    ev_naming.add_argument("--skip_grounded", type=float, default=None,
                           help="LLM namers: keep the keyword name, without asking the model, where it is grounded "
                           "at least this much")
    ev_naming.add_argument("--whole_history", action="store_true",
                           help="ablation: name each user's whole history at once instead of each journey")
    ev_naming.add_argument("--limit", type=int, default=None,
                           help="at most this many scored journeys (MovieLens groups; sample: whole users in id order)")
    ev_naming.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    ev_naming.add_argument("--torch_threads", type=int, default=1,
                           help="CPU threads of the sentence encoder and the LLM (default 1: names/s comparable "
                           "between runs)")
    ev_naming.add_argument("--out", help="also write the JSON here")

    reporting = commands.add_parser(
        "report", help="write a readable HTML report and a Markdown summary",
        description="Write OUT (one self-contained HTML file: inline SVG charts, no scripts) and OUT's "
        "name with .md: the strategy comparison tables and metric charts with intervals from `journeys eval "
        "naming --out` files, extraction quality from a saved `journeys eval extraction` JSON, and from a "
        "named/ dataset the journeys-per-user histogram and per-user timelines (one lane per journey).")
    reporting.add_argument("--eval", action="append", help="a `journeys eval naming` JSON file (repeatable)")
    reporting.add_argument("--extraction", help="a saved `journeys eval extraction` JSON file")
    reporting.add_argument("--named", help="a named/ folder written by `journeys name`")
    reporting.add_argument("--users", type=int, default=4, help="users with a timeline")
    reporting.add_argument("--out", required=True, help="the HTML file to write")

    convert = commands.add_parser("convert", help="convert public data sets to events/items")
    converters = convert.add_subparsers(dest="source", required=True, metavar="SOURCE")
    movielens = converters.add_parser(
        "movielens", help="MovieLens (ml-latest-small or the same layout)",
        description="Read ratings.csv, movies.csv and tags.csv from SRC; write OUT/events.parquet "
        "(ratings, weight = rating), OUT/items.parquet (genres as tags) and OUT/user_tags.parquet.")
    movielens.add_argument("--src", required=True, help="folder with the MovieLens CSV files")
    movielens.add_argument("--out", required=True, help="output folder")
    hetrec = converters.add_parser(
        "hetrec-movielens", help="HetRec 2011 MovieLens-2k (users' tags, with times)",
        description="Read user_taggedmovies-timestamps.dat, tags.dat, movies.dat, movie_genres.dat and "
        "movie_directors.dat from SRC; for the users who tagged --min_items or more movies write "
        "OUT/events.parquet (one 'tag' event per user and movie, at the first tag, weight 1), "
        "OUT/items.parquet (the tagged movies: 'Title (year)', genres and director as tags, first genre as "
        "category) and OUT/groups.parquet (user_id, item_id, tag: reference groups for `journeys eval "
        "extraction --groups`, tags that say nothing about a movie's subject such as 'dvd', 'seen' or "
        "'boring' left out). Prints the counts as JSON.")
    hetrec.add_argument("--src", required=True, help="the unpacked hetrec2011-movielens-2k folder")
    hetrec.add_argument("--out", required=True, help="output folder")
    hetrec.add_argument("--min_items", type=int, default=20,
                        help="fewest distinct tagged movies a user needs to be kept (default 20: 225 users)")

    exporting = commands.add_parser(
        "export", help="export named journeys for consumers (a Beam pipeline)",
        description="Read DIR (the named/ folder written by name); write OUT/journey_labels/ (one row "
        "per journey: user_id, journey_id, name, strategy, model, grounding, first_seen, last_seen, "
        "num_events, top_item_ids, representative_titles, status, version, [centroid]), with --lineage "
        "OUT/lineage/, and then OUT/_manifest.json "
        "(schema, row and user counts, configuration and its hash, input file fingerprints). The "
        "manifest is written last: read the labels only when it exists. A rerun replaces the export. "
        "Every option is listed below.", pipeline="export")
    exporting.add_argument("--named", required=True, help="the named/ folder written by name")
    exporting.add_argument("--out", required=True, help="export folder (local or gs://)")
    exporting.add_argument("--format", default="parquet", choices=["parquet", "jsonl"], help="file format")
    exporting.add_argument("--include_centroid", action="store_true", help="add each journey's centroid")
    exporting.add_argument("--lineage", default=None, help="the lineage/ folder written by extract: exported too")
    exporting.add_argument("--previous", default=None,
                           help="the previous export (needs --lineage): its journeys that ended get a label with "
                           "status 'ended'")

    running = commands.add_parser(
        "run", help="extract, name and export in one go",
        description="Run extract into OUT/extract, name into OUT/named and export into OUT/export (or "
        "--export_to), one after the other, and print one JSON line with each step's counts. The options "
        "below go to every step that takes them (e.g. --embedding_cache DIR to extract, --top_items to "
        "export) and to Beam.", pipeline="run")
    running.add_argument("--events", required=True, help="events file, folder or glob")
    running.add_argument("--items", required=True, help="items file, folder or glob")
    running.add_argument("--out", required=True, help="output folder")
    running.add_argument("--namer", default="keywords",
                         help="naming strategy (default keywords; fine-tuned: the LLM with the packaged adapter)")
    running.add_argument("--model", default=None, help="LLM namers: model id or path (see `journeys name --help`)")
    running.add_argument("--adapter", default=None,
                         help="prompt-tuned / fine-tuned: a folder from `journeys tune` (default for fine-tuned: the "
                         "packaged smollm2-namer)")
    running.add_argument("--export_format", default="parquet", choices=["parquet", "jsonl"], help="export format")
    running.add_argument("--export_to", default=None, help="export folder (default OUT/export)")
    running.add_argument("--previous", default=None,
                         help="an earlier run's OUT: build on it (kept journey ids, carried-over names, statuses, "
                         "lineage; see docs/incremental.md)")
    running.add_argument("--previous_export", default=None,
                         help="the earlier run's export folder, if it was not PREVIOUS/export")

    encoding = commands.add_parser(
        "encode", help="encode users as embeddings (a Beam pipeline)",
        description="Read the journeys/ folder written by extract (the journey encoder) or events (a sequence "
        "encoder: sasrec, gru4rec, llama, pre-trained by `journeys uqabench pretrain`) and write OUT/embeddings/ "
        "(Parquet: user_id, encoder, version, embedding as float32 list), OUT/dead_letter/ (users or rows that "
        "could not be encoded, with the reason) and OUT/summary.json (users read = encoded + failed; with and "
        "without records). The journey encoder pools the journeys' centroids weighted by size, persistence and "
        "recency, plus scalar features; a sequence encoder gives its state after the user's last event. Users "
        "with no records (from --users) get the encoder's empty-history embedding. Every option is listed "
        "below.", pipeline="encode")
    encoding.add_argument("--journeys", default=None, help="journey encoder: the journeys/ folder written by extract")
    encoding.add_argument("--events", default=None,
                          help="sequence encoders: the events (for a question set, its history.parquet)")
    encoding.add_argument("--sequence_model", default=None,
                          help="sequence encoders: the folder written by `journeys uqabench pretrain`")
    encoding.add_argument("--out", required=True, help="output folder")
    encoding.add_argument("--encoder", default="journey",
                          help="user encoder: journey (default), sasrec, gru4rec or llama")
    encoding.add_argument("--users", default=None,
                          help="a table with user_id (events, questions.jsonl): also encode these users")

    verifying = commands.add_parser(
        "verify", help="check an export (or a step's output) against its manifest",
        description="Check FOLDER against the record its step wrote last: an export's _manifest.json (or a "
        "step's summary.json; a `journeys run` folder: each step's) lists every file of each dataset with its "
        "size and SHA-256, and the rows. Prints one JSON object (datasets checked, differences); every "
        "difference is also one line on stderr naming the file and what differs (missing, not written by the "
        "step, truncated, extended, changed in place, swapped with another file). Exit 0 when everything "
        "matches, 1 on any difference, 2 when FOLDER holds no record to check against.")
    verifying.add_argument("folder", help="an export folder (with _manifest.json), a step's output folder or a "
                           "run folder")

    cli_uqabench.add_parser(commands)
    return parser


PIPELINE_COMMANDS = ("extract", "name", "export", "run", "encode")


def _paths(args) -> tuple[list[tuple[str, str | None]], list[str], list[str]]:
    """What a command reads and writes, for the output contract: (input option, path) pairs, the
    output folders and the output files."""
    target = getattr(args, "target", None) or getattr(args, "source", None)
    key = f"{args.command} {target}" if target else args.command
    reads = {
        "extract": ("events", "items"), "name": ("journeys", "adapter"), "export": ("named",),
        "encode": ("journeys", "events", "users", "sequence_model"), "run": ("events", "items", "adapter"),
        "tune pairs": ("sample", "movielens"), "tune prompt": ("train",), "tune finetune": ("train",),
        "eval extraction": ("journeys", "truth"),
        "eval naming": ("journeys", "truth", "movielens", "prompt_adapter", "finetune_adapter"),
        "report": ("eval", "extraction", "named"), "verify": ("folder",), "convert movielens": ("src",),
        "convert hetrec-movielens": ("src",),
        "uqabench build": ("events", "items", "journeys"), "uqabench score": ("questions", "predictions"),
        "uqabench pretrain": ("events", "items"), "uqabench llm": ("questions", "items"),
        "uqabench align": ("questions", "items", "llm", "embeddings", "encoder"),
        "uqabench evaluate": ("questions", "items", "aligned", "llm"),
    }.get(key, ())
    inputs = []
    for name in reads:
        values = getattr(args, name, None)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and value:
                inputs.append((f"--{name}", value))
    files = {"tune pairs": ["out"], "eval naming": ["out"], "report": ["out"],
             "uqabench evaluate": ["out", "predictions"]}.get(key)
    if files is not None:
        out = [getattr(args, name) for name in files if getattr(args, name, None)]
        if key == "report" and out:
            out.append(out[0].rsplit(".", 1)[0] + ".md")
        return inputs, [], out
    folders = [getattr(args, name) for name in ("out", "export_to") if getattr(args, name, None)]
    return inputs, folders, []


def _subcommand(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The parser of the (sub)command that ``args`` ran, e.g. that of `journeys eval naming`."""
    command = parser
    for name in ("command", "target", "source"):
        value = getattr(args, name, None)
        sub = next((a for a in command._actions if isinstance(a, argparse._SubParsersAction)), None)  # noqa: SLF001
        if value and sub is not None and value in sub.choices:
            command = sub.choices[value]
    return command


def _option_strings(command: argparse.ArgumentParser) -> list[str]:
    return sorted(s for a in command._actions for s in a.option_strings)  # noqa: SLF001


def _unknown_options(parser: argparse.ArgumentParser, args, extra: list[str]) -> str:
    """The error for options argparse did not take, with the closest option of that command."""
    import difflib

    from pipelines.arguments import given_options

    command = _subcommand(parser, args)
    known = _option_strings(command)
    unknown = given_options(extra) or extra
    close = difflib.get_close_matches(unknown[0], known, n=1, cutoff=0.7)
    hint = f": did you mean {close[0]}?" if close else f"; see `{command.prog} --help`"
    return f"unknown option {unknown[0]}{hint}" if unknown[0].startswith("-") else \
        f"unrecognized arguments: {' '.join(extra)}"


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in PIPELINE_COMMANDS:
        print(f"journeys {args.command}: error: {_unknown_options(parser, args, extra)}", file=sys.stderr)
        return 2
    logs.configure(args.verbose)
    from journeys.inputs import InputError
    from journeys.llms import ModelUnavailable
    from journeys.outputs import OutputError

    # Installed before Beam is imported: with the Dataflow extra that import takes seconds, and a
    # Ctrl-C inside it must end with the same one line as one inside the pipeline.
    stop_signals.install()
    PipelineFailed = OSError  # until Beam's module is imported below: an interrupt may come first
    try:
        from pipelines.options import PipelineFailed

        if args.command in PIPELINE_COMMANDS:
            from pipelines import arguments

            arguments.check(args.command, extra, _option_strings(_subcommand(parser, args)))
            if args.command in ("name", "run"):
                arguments.check_namer(args.namer, list(argv if argv is not None else sys.argv[1:]))
        return _with_outputs_claimed(args, extra)
    except BaseException as err:
        signalled = stop_signals.take()
        if signalled or isinstance(err, KeyboardInterrupt):
            terminated = signalled == signal.SIGTERM
            print(f"journeys {args.command}: stopped by {'SIGTERM' if terminated else 'interrupt (Ctrl-C)'}; what "
                  "it was writing is incomplete and carries no summary: run the command again (it cleans up "
                  "what this run left)", file=sys.stderr)
            return 143 if terminated else 130
        # An input, output or option to fix, or a file that cannot be read or written: the message
        # names it. Anything else is a bug, and its traceback is kept.
        if isinstance(err, InputError | OutputError | ValueError | OSError | ModelUnavailable | PipelineFailed):
            print(f"journeys {args.command}: error: {err}", file=sys.stderr)
            return 2
        raise
    finally:
        stop_signals.restore()


def _with_outputs_claimed(args, extra: list[str]) -> int:
    """The output contract (journeys.outputs) before any work: every output checked, folders held."""
    import contextlib

    from journeys import outputs

    inputs, folders, files = _paths(args)
    with contextlib.ExitStack() as stack:
        for folder in folders:
            stack.enter_context(outputs.claim(folder, inputs))
        for file in files:
            outputs.check_file_target(file, inputs)
        return _dispatch(args, extra)


def _dispatch(args, extra: list[str]) -> int:
    if args.command == "export":
        return _export(args, extra)
    if args.command == "run":
        return _run(args, extra)
    if args.command == "sample":
        return _sample(args)
    if args.command == "extract":
        return _extract(args, extra)
    if args.command == "name":
        return _name(args, extra)
    if args.command == "tune":
        return _tune_pairs(args) if args.target == "pairs" else _tune(args)
    if args.command == "encode":
        return _encode(args, extra)
    if args.command == "uqabench":
        return cli_uqabench.run(args)
    if args.command == "report":
        return _report(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "eval":
        return _eval_extraction(args) if args.target == "extraction" else _eval_naming(args)
    if args.source == "hetrec-movielens":
        return _convert_hetrec(args)
    return _convert_movielens(args)


if __name__ == "__main__":
    sys.exit(main())
