"""The option contract of the pipeline commands (extract, name, export, encode, run), checked before
any work.

Beam registers every PipelineOptions subclass's flags in one parser and, given a flag none of them
knows, only logs a warning, so a misspelt ``--min_itmes 10`` would run with the default. Here:

- an option no pipeline and no Beam option class declares is an error that suggests the closest
  known option;
- an option of another journeys pipeline (``--max_titles`` given to extract) is an error that says
  which command takes it; Beam's own options (runner, workers, Dataflow...) pass through;
- a count that must be positive (``--num_shards 0``) or a value that is not a finite number is an
  error;
- an option that does not apply to the chosen extraction strategy or naming strategy is an error.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import math
import types
from collections.abc import Iterable
from functools import cache

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser


class OptionError(ValueError):
    """An option the user must fix; the message names it."""


# The smallest value each count may take.
MINIMUMS = {
    "num_shards": 1, "embed_batch_size": 1, "export_shards": 1, "top_items": 1, "encode_shards": 1,
    "batch_size": 1, "torch_threads": 0, "max_titles": 1, "exemplars": 0, "candidates": 1, "min_items": 1,
    "min_active_days": 0, "min_span_days": 0, "direct_num_workers": 0,
}

# Options declared once for several pipelines (CommonOptions) that a command does not read, or
# that `journeys run` sets itself for its steps, with what to do instead.
NOT_FOR = {
    "extract": {"--journeys": "extract reads --events and --items"},
    "name": {"--events": "name reads --journeys"},
    "export": {"--journeys": "export reads --named", "--events": "export reads --named"},
    "run": {"--journeys": "run passes extract's journeys/ to name itself",
            "--named": "run passes name's named/ to export itself", "--format": "use --export_format"},
}

# Naming options and the naming strategies they apply to.
LLM_NAMERS = ("few-shot", "prompt-tuned", "fine-tuned")
NAMER_OPTIONS = {
    "--model": LLM_NAMERS, "--adapter": ("prompt-tuned", "fine-tuned"), "--max_titles": LLM_NAMERS,
    "--min_grounding": LLM_NAMERS, "--candidates": LLM_NAMERS, "--exemplars": ("few-shot",),
    "--model_answers_only": LLM_NAMERS, "--quantize": LLM_NAMERS, "--skip_grounded": LLM_NAMERS,
}


def _pipeline_classes() -> dict[str, tuple[type, ...]]:
    from pipelines import encode, export, extract, name
    from pipelines.options import CommonOptions, EventOptions

    steps = {
        "extract": (CommonOptions, EventOptions, extract.ExtractOptions),
        "name": (CommonOptions, name.NameOptions),
        "export": (CommonOptions, export.ExportOptions),
        "encode": (CommonOptions, EventOptions, encode.EncodeOptions),
    }
    steps["run"] = tuple(dict.fromkeys(steps["extract"] + steps["name"] + steps["export"]))
    return steps


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@cache
def _parser(cls: type) -> argparse.ArgumentParser | None:
    """A parser holding only ``cls``'s options, in its argument groups (None if it cannot be built)."""
    parser = _BeamArgumentParser(add_help=False, allow_abbrev=False)
    try:
        cls._add_argparse_args(parser)  # noqa: SLF001 (Beam's own way to list a class's flags)
    except argparse.ArgumentError:
        return None
    return parser


@cache
def _flags(cls: type) -> frozenset[str]:
    parser = _parser(cls)
    if parser is None:
        return frozenset()
    return frozenset(s for action in parser._actions for s in action.option_strings)  # noqa: SLF001


@cache
def runner_flags() -> frozenset[str]:
    """Every flag an option class of a runner Beam ships declares, imported or not.

    Beam registers a runner's options only once its module is imported (``--dask_client_address``
    when the DaskRunner is chosen), and some of those modules need packages that are not installed
    (dask); so the flags are read from the source of Beam's options and runners packages, without
    importing them."""
    import ast
    import os

    import apache_beam

    root = os.path.dirname(apache_beam.__file__)
    flags: set[str] = set()
    for package in ("options", "runners"):
        for folder, _, files in os.walk(os.path.join(root, package)):
            for file in files:
                if not file.endswith(".py") or file.endswith("_test.py"):
                    continue
                with open(os.path.join(folder, file), encoding="utf-8") as handle:
                    source = handle.read()
                if "_add_argparse_args" not in source:
                    continue
                for node in ast.walk(ast.parse(source)):
                    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                            and node.func.attr in ("add_argument", "add_value_provider_argument")):
                        flags.update(arg.value for arg in node.args if isinstance(arg, ast.Constant)
                                     and isinstance(arg.value, str) and arg.value.startswith("--"))
    return frozenset(flags)


def given_options(argv: Iterable[str]) -> list[str]:
    """The ``--name`` of every option in ``argv`` (values and ``--name=value`` handled)."""
    names = []
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            names.append(token.split("=", 1)[0])
    return names


def check(command: str, argv: list[str], cli_options: Iterable[str] = ()) -> None:
    """Refuse, before any work, an option of ``argv`` (the arguments passed on to the pipeline)
    that is unknown, belongs to another command, has an impossible value or does not apply to the
    chosen strategy. ``cli_options``: the command's own command-line options, for suggestions."""
    steps = _pipeline_classes()
    own = steps[command]
    ours = {cls for classes in steps.values() for cls in classes}
    beam_flags = set().union(*(_flags(c) for c in _subclasses(PipelineOptions)
                               if not c.__module__.startswith("pipelines.") and c not in ours)) | runner_flags()
    allowed = beam_flags | set().union(*(_flags(c) for c in own)) | set(cli_options)
    elsewhere = {flag: other for other, classes in steps.items() if other != "run"
                 for cls in classes if cls not in own for flag in _flags(cls)}
    for option in given_options(argv):
        if option in NOT_FOR.get(command, {}):
            raise OptionError(f"{option} does not apply to `journeys {command}`: {NOT_FOR[command][option]}")
        if option in allowed:
            continue
        if option in elsewhere:
            raise OptionError(f"{option} does not apply to `journeys {command}`: it is an option of "
                              f"`journeys {elsewhere[option]}`")
        close = difflib.get_close_matches(option, sorted(allowed), n=1, cutoff=0.7)
        hint = f": did you mean {close[0]}?" if close else f": see `journeys {command} --help`"
        raise OptionError(f"unknown option {option} for `journeys {command}`{hint}")
    # A value of the wrong type (--num_shards abc) makes Beam's parser print its usage and exit: one
    # line instead, as for the other refusals.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            options = PipelineOptions(argv)
            _check_values(options, own)
            if command in ("extract", "run"):
                _check_strategy(options, given_options(argv))
    except SystemExit:
        lines = printed.getvalue().strip().splitlines() or ["an option could not be read"]
        raise OptionError(lines[-1].split("error: ", 1)[-1]) from None


def _check_values(options: PipelineOptions, classes: tuple[type, ...]) -> None:
    values = {}
    for cls in classes:
        values |= options.view_as(cls).get_all_options(current_only=True)
    values["direct_num_workers"] = options.get_all_options().get("direct_num_workers")
    for dest, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"--{dest} must be a finite number, got {value}")
        if dest in MINIMUMS and value < MINIMUMS[dest]:
            raise OptionError(f"--{dest} must be at least {MINIMUMS[dest]}, got {value}")


def _check_strategy(options: PipelineOptions, given: list[str]) -> None:
    """An extraction option is strategy-specific when it changes the parameters of some strategy;
    given with a strategy it does not change, it would be silently ignored: refused."""
    from journeys.extraction import strategies
    from pipelines.extract import ExtractOptions, extractor_params, log_extractor_params

    values = options.view_as(ExtractOptions).get_all_options()
    chosen = values.get("strategy")
    for option in given:
        dest = option[2:]
        if dest == "strategy" or values.get(dest) is None:
            continue
        applies = [s for s in strategies() if _changes(values, dest, s, extractor_params)
                   or _changes(values, dest, s, log_extractor_params)]
        if applies and chosen not in applies:
            raise OptionError(f"{option} does not apply to the {chosen} strategy (it is for "
                              f"{', '.join(applies)}): leave it out, or choose --strategy {applies[0]}")


def _changes(values: dict, dest: str, strategy: str, params_of) -> bool:
    with_it = types.SimpleNamespace(**{**values, "strategy": strategy})
    without = types.SimpleNamespace(**{**values, "strategy": strategy, dest: None})
    return params_of(with_it) != params_of(without)


def check_namer(namer: str, argv: list[str]) -> None:
    """Refuse a naming option the chosen naming strategy does not use (it would be ignored)."""
    for option in given_options(argv):
        if option in NAMER_OPTIONS and namer not in NAMER_OPTIONS[option]:
            raise OptionError(f"{option} does not apply to the {namer} namer (it is for "
                              f"{', '.join(NAMER_OPTIONS[option])})")


# Beam's options most runs need, shown in `journeys COMMAND --help` under "Beam and runners" (every
# other option of Beam and its runners passes through too; Beam's own help texts run to paragraphs).
BEAM_OPTIONS = (
    ("--runner", "FnApiRunner", "FnApiRunner (local, offline), DataflowRunner, or any runner Beam ships"),
    ("--direct_running_mode", "in_memory", "local runner: in_memory, multi_threading or multi_processing"),
    ("--direct_num_workers", 1, "local runner: workers (0: one per core)"),
    ("--project", None, "Dataflow: the Google Cloud project"),
    ("--region", None, "Dataflow: the region the job runs in"),
    ("--temp_location", None, "Dataflow: a gs:// folder for temporary files"),
    ("--staging_location", None, "Dataflow: a gs:// folder for the staged package (default: --temp_location)"),
    ("--setup_file", None, "Dataflow: ./setup.py ships this package to the workers"),
    ("--sdk_container_image", None, "Dataflow: a worker container with the project installed (starts faster)"),
    ("--num_workers", None, "Dataflow: workers to start with"),
    ("--max_num_workers", None, "Dataflow: most workers autoscaling may use"),
    ("--machine_type", None, "Dataflow: worker machine type, e.g. n2-standard-4"),
    ("--dry_run", False, "true: translate the pipeline for the runner and stop (no job, nothing written)"),
    ("--template_location", None, "Dataflow: stage a classic template at this path instead of running"),
)


def option_groups(command: str) -> list[tuple[str, list[argparse.Action]]]:
    """The pipeline options of ``command``, grouped as in its option classes, then Beam's main ones:
    [(group title, argparse actions)]. Reads the option classes only: no pipeline is built."""
    groups: dict[str, list[argparse.Action]] = {}
    seen: set[str] = set()
    for cls in _pipeline_classes()[command]:
        parser = _parser(cls)
        for group in parser._action_groups:  # noqa: SLF001
            for action in group._group_actions:  # noqa: SLF001
                if action.option_strings[0] in seen or action.option_strings[0] in NOT_FOR.get(command, {}):
                    continue
                seen.add(action.option_strings[0])
                groups.setdefault(group.title, []).append(action)
    beam = argparse.ArgumentParser(add_help=False)
    for flag, default, text in BEAM_OPTIONS:
        beam.add_argument(flag, default=default, help=text, metavar=flag[2:].upper())
    title = "Beam and runners (any other option of Beam or of a runner it ships passes through)"
    groups[title] = beam._actions  # noqa: SLF001
    return list(groups.items())
