"""The Python API: the command line's pipelines, called from a notebook or a script.

Each function runs the same pipeline as its command (``journeys extract``, ``name``, ``export``)
with the same option check, on the local runner unless a ``runner`` is given, and returns what it
wrote as pandas DataFrames. Options are keyword arguments with the command's names and defaults
(``threshold=0.45``, ``strategy="hdbscan"``, ``embedding_cache="cache"``): ``journeys.options("extract")``
lists them, as ``journeys extract --help`` does. Beam, torch and the pipelines are imported when a
function is first called, so ``import journeys`` stays light.

    import journeys

    sample = journeys.make_sample(users=20)
    extracted = journeys.extract(sample.events, sample.items)
    named = journeys.name(extracted)
    named.timeline("u00003")      # the user's journeys on a timeline, inline in a notebook
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

Table = Union["pd.DataFrame", "pa.Table", str, os.PathLike]
"""A table argument: a pandas DataFrame, an Arrow table, or a path (file, folder or glob; local or
gs://) in any input format the command line reads."""

__all__ = ["ExportResult", "ExtractResult", "NameResult", "Sample", "Timeline", "export", "extract", "make_sample",
           "name", "options"]


# ---- options ----------------------------------------------------------------------------------

def options(command: str) -> pd.DataFrame:
    """Every keyword argument of ``journeys.<command>`` (extract, name, export), as ``journeys
    COMMAND --help`` lists them: one row per option with its group, default and help."""
    import pandas as pd

    from pipelines.arguments import option_groups

    positional = POSITIONAL.get(_known_command(command), ())
    rows = [{"keyword": action.dest, "group": title.split(" (")[0], "default": action.default, "help": action.help}
            for title, actions in option_groups(command) for action in actions if action.dest not in positional]
    return pd.DataFrame(rows)


# The tables each function takes as arguments rather than as options.
POSITIONAL = {"extract": ("events", "items"), "name": ("journeys",), "export": ("named",)}


def _known_command(command: str) -> str:
    if command not in ("extract", "name", "export", "encode", "run"):
        raise ValueError(f"no pipeline called {command!r}: extract, name, export, encode or run")
    return command


def _takes_value() -> dict[str, bool]:
    """Every flag Beam and the pipelines know -> whether it takes a value (``--include_centroid``
    does not; ``--dry_run true`` does)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.arguments import _parser, _subclasses

    takes = {}
    for cls in _subclasses(PipelineOptions):
        parser = _parser(cls)
        for action in parser._actions if parser else ():  # noqa: SLF001
            for flag in action.option_strings:
                takes[flag] = action.nargs != 0
    return takes


def _argv(given: Mapping[str, Any]) -> list[str]:
    """Keyword arguments -> command-line arguments: ``None`` and ``False`` flags left out, ``True``
    given bare to a switch (``--include_centroid``) or as ``true`` to an option with a value, a
    list repeated (``experiments=["a", "b"]``)."""
    takes = _takes_value()
    argv: list[str] = []
    for key, value in given.items():
        flag = f"--{key}"
        if value is None:
            continue
        if isinstance(value, bool) and not takes.get(flag, True):
            argv += [flag] if value else []
            continue
        for one in value if isinstance(value, list | tuple) else [value]:
            text = str(one).lower() if isinstance(one, bool) else os.fspath(one) if isinstance(one, os.PathLike) \
                else str(one)
            argv += [flag, text]
    return argv


def _check(command: str, given: Mapping[str, Any], namer: str | None = None) -> list[str]:
    """The pipeline's own option check (pipelines.arguments), its messages worded for keywords:
    ``min_itmes=10`` -> "unknown keyword argument min_itmes for journeys.extract(): did you mean
    min_items?"."""
    from pipelines import arguments

    argv = _argv(given)
    try:
        with _as_library():  # the check imports every pipeline
            arguments.check(command, argv)
        if namer is not None:
            arguments.check_namer(namer, argv)
    except arguments.OptionError as err:
        message = str(err).replace(f"`journeys {command} --help`", f"journeys.options({command!r})")
        message = re.sub(r"`journeys (\w+)`", r"journeys.\1()", message)
        message = re.sub(r"--(\w+)", r"\1", message).replace("unknown option", "unknown keyword argument")
        raise arguments.OptionError(message) from None
    return argv


# ---- inputs and outputs -----------------------------------------------------------------------

class _Workspace:
    """Where a call writes the tables it was given, and its output when no ``out`` is given."""

    def __init__(self, out: str | os.PathLike | None):
        self.inputs = tempfile.mkdtemp(prefix="journeys-inputs-")
        self.out = os.fspath(out) if out is not None else tempfile.mkdtemp(prefix="journeys-")
        self.temporary_out = out is None

    def table(self, value: Table, name: str) -> str:
        """A path to ``value``: written as Parquet if it is a DataFrame or an Arrow table."""
        import pyarrow as pa

        if isinstance(value, str | os.PathLike):
            return os.fspath(value)
        if not isinstance(value, pa.Table):
            import pandas as pd

            if not isinstance(value, pd.DataFrame):
                raise TypeError(f"{name}: give a pandas DataFrame, an Arrow table or a path, not "
                                f"{type(value).__name__}")
            value = pa.Table.from_pandas(value, preserve_index=False)
        from journeys import io

        path = os.path.join(self.inputs, f"{name}.parquet")
        io.write_table(value, path)
        return path

    def close(self, keep_out: bool) -> None:
        shutil.rmtree(self.inputs, ignore_errors=True)
        if self.temporary_out and not keep_out:
            shutil.rmtree(self.out, ignore_errors=True)


def _read(folder: str, dataset_schema) -> pd.DataFrame:
    """A dataset a step wrote, as a DataFrame (with the schema's columns when it has no rows)."""
    from journeys import io

    fs, path = io.url_to_fs(folder)
    if not fs.exists(path) or not io.list_input_files(folder):
        return dataset_schema.empty_table().to_pandas()
    return io.read_table(folder).to_pandas()


def _owned(result, workspace: _Workspace):
    """A result that owns its temporary output folder: removed when the result is."""
    if workspace.temporary_out:
        weakref.finalize(result, shutil.rmtree, workspace.out, True)
    return result


@contextlib.contextmanager
def _as_library():
    """Run a pipeline as the command line does, also inside a notebook.

    Inside IPython, Beam takes every pipeline for one the user builds cell by cell (Interactive
    Beam): it labels transforms by cell, puts jQuery into the notebook and keeps temporary folders
    for later inspection. These pipelines are the library's own, so for the call Beam is told it is
    not in IPython. Model-loading progress bars and tqdm's notebook-widget warning are left out of
    the notebook's output too."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        modules = [importlib.import_module(name) for name in (
            "apache_beam.utils.interactive_utils", "apache_beam.pipeline", "apache_beam.runners.direct.direct_runner")]
        saved = [module.is_in_ipython for module in modules]
        from transformers.utils import logging as transformers_logging

        bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            for module in modules:
                module.is_in_ipython = lambda: False
            yield
        finally:
            for module, original in zip(modules, saved):
                module.is_in_ipython = original
            if bars:
                transformers_logging.enable_progress_bar()


def _pipeline(step: str):
    """The pipeline module of ``step`` (imported on first use: Beam, torch and the models' libraries)."""
    import importlib

    with _as_library():
        return importlib.import_module(f"pipelines.{step}")


def _run(workspace: _Workspace, run, argv: list[str]):
    try:
        with _as_library():
            outcome = run(argv, save_main_session=False)
    except BaseException:
        workspace.close(keep_out=False)
        raise
    workspace.close(keep_out=True)
    return outcome


# ---- the timeline picture ---------------------------------------------------------------------

class Timeline:
    """One user's journeys on a timeline, one lane per journey from its first to its last event,
    labelled with its name (extracted journeys: their salient terms) — the picture of the HTML
    report (``journeys report``). Renders inline in a notebook; ``.svg`` is the SVG document and
    ``save(path)`` writes it."""

    def __init__(self, user_id: str, journeys: list[dict]):
        if not journeys:
            raise ValueError(f"user {user_id!r} has no journeys to draw")
        from eval.report import timeline_svg

        self.user_id, self.journeys = user_id, journeys
        self.svg = timeline_svg(user_id, journeys)

    def _repr_svg_(self) -> str:
        return self.svg

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.svg)


def _label(row: dict) -> str:
    """A journey's name; an unnamed journey's three most salient terms."""
    if row.get("name"):
        return row["name"]
    terms = row.get("salient_terms")
    terms = [t["term"] if isinstance(t, dict) else t[0] for t in ([] if terms is None else list(terms))[:3]]
    titles = [] if row.get("representative_titles") is None else list(row["representative_titles"])
    return ", ".join(terms) or (titles + [row["journey_id"]])[0]


def _timeline(frame: pd.DataFrame, user_id: str | None) -> Timeline:
    if frame.empty:
        raise ValueError("there are no journeys to draw")
    if user_id is None:  # the user with the most journeys (the first such, by id)
        counts = frame.groupby("user_id").size()
        user_id = sorted(counts[counts == counts.max()].index)[0]
    rows = frame[frame["user_id"] == user_id].to_dict("records")
    journeys = [{"name": _label(r), "first_ts": r["first_ts"].to_pydatetime(),
                 "last_ts": r["last_ts"].to_pydatetime(), "num_events": r["num_events"]} for r in rows]
    return Timeline(str(user_id), journeys)


# ---- results ----------------------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Sample:
    """A synthetic sample with ground truth (``journeys sample``): events, items and each event's
    planted interest (truth)."""

    events: pd.DataFrame
    items: pd.DataFrame
    truth: pd.DataFrame


@dataclasses.dataclass(eq=False)
class ExtractResult:
    """What ``extract`` wrote, read back: one DataFrame per dataset (see ``journeys extract --help``),
    the summary (``summary.json``) and the folder (``out``; a temporary one, removed with this
    result, unless ``out`` was given)."""

    out: str
    summary: dict
    journeys: pd.DataFrame
    users: pd.DataFrame
    transient: pd.DataFrame
    lineage: pd.DataFrame
    dead_letter: pd.DataFrame

    def user(self, user_id: str) -> pd.DataFrame:
        """One user's journeys, oldest first."""
        return self.journeys[self.journeys["user_id"] == user_id].sort_values("first_ts").reset_index(drop=True)

    def timeline(self, user_id: str | None = None) -> Timeline:
        """A user's journeys on a timeline (default: the user with the most journeys)."""
        return _timeline(self.journeys, user_id)

    def _counts(self) -> dict:
        return {"users": self.summary["users"]["with_valid_events"], "journeys": self.summary["journeys"],
                "transient clusters": self.summary["transient_clusters"],
                "events read": self.summary["events"]["read"], "rejected": self.summary["events"]["rejected"]}

    def __repr__(self) -> str:
        return _summary_text(self, self._counts())

    def _repr_html_(self) -> str:
        return _summary_html("extracted", self.summary, self._counts())


@dataclasses.dataclass(eq=False)
class NameResult:
    """What ``name`` wrote: the named journeys, the journeys whose naming failed, the summary and the
    folder."""

    out: str
    summary: dict
    named: pd.DataFrame
    dead_letter: pd.DataFrame

    def user(self, user_id: str) -> pd.DataFrame:
        """One user's named journeys, oldest first."""
        return self.named[self.named["user_id"] == user_id].sort_values("first_ts").reset_index(drop=True)

    def timeline(self, user_id: str | None = None) -> Timeline:
        """A user's named journeys on a timeline (default: the user with the most journeys)."""
        return _timeline(self.named, user_id)

    def _counts(self) -> dict:
        return {key.replace("_", " "): self.summary[key] for key in (
            "journeys_read", "named", "failed", "sent_to_namer", "carried_over")}

    def __repr__(self) -> str:
        return _summary_text(self, self._counts())

    def _repr_html_(self) -> str:
        return _summary_html("named", self.summary, self._counts())


@dataclasses.dataclass(eq=False)
class ExportResult:
    """What ``export`` wrote: the labels table, the lineage (when given), the manifest and the folder."""

    out: str
    manifest: dict
    labels: pd.DataFrame
    lineage: pd.DataFrame | None

    def __repr__(self) -> str:
        return _summary_text(self, {"rows": self.manifest["rows"], "users": self.manifest["users"]})

    def _repr_html_(self) -> str:
        return _summary_html("exported", self.manifest, {"rows": self.manifest["rows"],
                                                         "users": self.manifest["users"]})


def _summary_text(result, counts: dict) -> str:
    """A result's counts in one line (its DataFrames and folder are attributes: .journeys, .out...)."""
    return f"{type(result).__name__}({', '.join(f'{k}: {v:,}' for k, v in counts.items())})"


def _summary_html(what: str, summary: dict, counts: dict) -> str:
    import html

    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>" for k, v in counts.items())
    return (f"<p>journeys: {html.escape(what)} in {summary.get('wall_seconds', 0):.1f} s</p>"
            f"<table>{cells}</table>")


# ---- the functions ----------------------------------------------------------------------------

def make_sample(users: int = 200, seed: int = 0, **config: Any) -> Sample:
    """A synthetic sample with ground truth, as ``journeys sample`` writes it: users with 1-5
    persistent journeys, one-off interests and noise clicks. ``config``: the other settings of
    ``journeys sample --help`` (``noise_share=0.1``, ``span_days=180``, ...)."""
    from dataclasses import fields

    from journeys.sample.generator import SampleConfig, generate

    known = [f.name for f in fields(SampleConfig)]
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
            hint = f": did you mean {close[0]}?" if close else f"; known: {', '.join(known)}"
            raise TypeError(f"unknown keyword argument {key} for journeys.make_sample(){hint}")
    data = generate(SampleConfig(users=users, seed=seed, **config))
    return Sample(data.events.to_pandas(), data.items.to_pandas(), data.truth.to_pandas())


def extract(events: Table, items: Table, *, out: str | os.PathLike | None = None,
            previous: str | os.PathLike | None = None, **options: Any) -> ExtractResult | dict[str, Any]:
    """Extract every user's persistent interest journeys: the ``journeys extract`` pipeline.

    ``events``: user_id, item_id, timestamp, [weight], [event_type]; ``items``: item_id, title,
    [tags], [category], [text] — DataFrames, Arrow tables or paths. ``out``: where to write the
    datasets (default: a temporary folder, removed with the result). ``previous``: an earlier
    extraction's ``out`` to build on (kept journey ids, lineage). ``options``: any option of
    ``journeys extract --help`` as a keyword (``threshold=0.45``, ``strategy="hdbscan"``,
    ``persistence="count"``, ``embedding_cache="cache"``, ``runner="DataflowRunner"``...; see
    ``journeys.options("extract")``), checked as the command checks them.

    Returns the journeys, users, transient clusters, lineage and dead letters as DataFrames, and
    the summary. With ``dry_run=True`` or ``template_location`` (the DataflowRunner) nothing runs:
    the returned dict describes the translated job (steps, transforms, container, staged files)."""
    from journeys import schema

    pipeline = _pipeline("extract")
    argv = _check("extract", options)
    workspace = _Workspace(out)
    paths = ["--events", workspace.table(events, "events"), "--items", workspace.table(items, "items"),
             "--out", workspace.out]
    if previous is not None:
        paths += ["--previous", os.fspath(previous)]
    summary = _run(workspace, pipeline.run, [*paths, *argv])
    if _only_translated(summary):
        return summary
    folder = workspace.out
    from journeys import io

    result = ExtractResult(
        out=folder, summary=summary, journeys=_read(io.join(folder, "journeys"), schema.JOURNEYS),
        users=_read(io.join(folder, "users"), schema.USERS), transient=_read(io.join(folder, "transient"),
                                                                             schema.TRANSIENT),
        lineage=_read(io.join(folder, "lineage"), schema.LINEAGE),
        dead_letter=_read(io.join(folder, "dead_letter"), schema.DEAD_LETTER))
    return _owned(result, workspace)


def name(journeys: ExtractResult | str | os.PathLike, *, namer: str = "keywords", out: str | os.PathLike | None = None,
         previous: str | os.PathLike | None = None, **options: Any) -> NameResult | dict[str, Any]:
    """Name extracted journeys: the ``journeys name`` pipeline.

    ``journeys``: the result of ``extract``, its ``out`` folder or its journeys/ folder. ``namer``:
    keywords (default), few-shot, prompt-tuned or fine-tuned. ``out``: as for ``extract``.
    ``previous``: an earlier naming's ``out`` (names of journeys that continue are carried over).
    ``options``: any option of ``journeys name --help`` as a keyword (``model=...``, ``adapter=...``,
    ``max_titles=5``, ``candidates=8``...; see ``journeys.options("name")``).

    Returns the named journeys and the failures as DataFrames, and the summary (a dry run: as for
    ``extract``)."""
    from journeys import io, schema

    pipeline = _pipeline("name")
    folder = _dataset(journeys, "journeys")
    argv = _check("name", {"namer": namer, **options}, namer=namer)
    workspace = _Workspace(out)
    paths = ["--journeys", folder, "--out", workspace.out]
    if previous is not None:
        paths += ["--previous", os.fspath(previous)]
    summary = _run(workspace, pipeline.run, [*paths, *argv])
    if _only_translated(summary):
        return summary
    result = NameResult(out=workspace.out, summary=summary,
                        named=_read(io.join(workspace.out, "named"), schema.NAMED_JOURNEYS),
                        dead_letter=_read(io.join(workspace.out, "dead_letter"), schema.DEAD_LETTER))
    return _owned(result, workspace)


def export(named: NameResult | str | os.PathLike, *, out: str | os.PathLike | None = None,
           lineage: ExtractResult | str | os.PathLike | None = None, previous: str | os.PathLike | None = None,
           **options: Any) -> ExportResult | dict[str, Any]:
    """Export named journeys as the labels table recommender teams read: the ``journeys export``
    pipeline.

    ``named``: the result of ``name``, its ``out`` folder or its named/ folder. ``lineage``: the
    extraction (result, ``out`` or lineage/ folder) whose lineage to export beside the labels.
    ``previous``: the previous export (needs ``lineage``): its ended journeys get a last label.
    ``options``: any option of ``journeys export --help`` (``format="jsonl"``,
    ``include_centroid=True``, ``top_items=10``...; see ``journeys.options("export")``).

    Returns the labels (and lineage) as DataFrames and the manifest (a dry run: as for ``extract``)."""
    from journeys import io, schema

    pipeline = _pipeline("export")
    argv = _check("export", options)
    workspace = _Workspace(out)
    paths = ["--named", _dataset(named, "named"), "--out", workspace.out]
    if lineage is not None:
        paths += ["--lineage", _dataset(lineage, "lineage")]
    if previous is not None:
        paths += ["--previous", os.fspath(previous)]
    manifest = _run(workspace, pipeline.run, [*paths, *argv])
    if _only_translated(manifest):
        return manifest
    columns = schema.journey_labels(bool(options.get("include_centroid")))
    labels = _read_labels(io.join(workspace.out, "journey_labels"), columns, manifest["format"])
    lineage_rows = _read_labels(io.join(workspace.out, "lineage"), schema.LINEAGE, manifest["format"]) \
        if lineage is not None else None
    return _owned(ExportResult(out=workspace.out, manifest=manifest, labels=labels, lineage=lineage_rows), workspace)


def _read_labels(folder: str, dataset_schema, file_format: str) -> pd.DataFrame:
    if file_format == "parquet":
        return _read(folder, dataset_schema)
    import pandas as pd

    from journeys import io

    files = io.list_input_files(folder)
    frames = [pd.read_json(f, lines=True) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else dataset_schema.empty_table().to_pandas()


def _dataset(value, dataset: str) -> str:
    """The folder of ``dataset`` (journeys, named, lineage) in a result or a step's output folder."""
    from journeys import io

    if isinstance(value, ExtractResult | NameResult):
        return io.join(value.out, dataset)
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"give the result of the previous step or a folder, not {type(value).__name__}")
    path = os.fspath(value)
    fs, stripped = io.url_to_fs(io.join(path, dataset))
    return io.join(path, dataset) if fs.isdir(stripped) else path


def _only_translated(outcome) -> bool:
    """A dry run or a staged template: the pipeline was translated, not run (see pipelines.options)."""
    return isinstance(outcome, dict) and "translated" in outcome
