"""Options shared by every pipeline. Beam registers all PipelineOptions subclasses' flags in one
parser, so a flag is declared once, here, and each pipeline reads it with ``view_as``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from journeys import io, outputs
from journeys.validation import DEFAULT_WINDOW_END, DEFAULT_WINDOW_START, TimeWindow


class CommonOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("journeys")
        group.add_argument("--out", help="output folder (local or gs://)")
        group.add_argument("--torch_threads", type=int, default=1, help="torch threads per worker")
        # Read by more than one pipeline (name, encode; extract, encode), so declared once here.
        group.add_argument("--journeys", help="the journeys/ dataset written by extract")
        group.add_argument("--events", help="events: Parquet, CSV or JSONL file, folder or glob (local or gs://)")
        # Read by extract, name and export: each finds its own part of the earlier run (journeys/previous.py).
        group.add_argument("--previous", default=None,
                           help="an earlier run to build on: its folder (from `journeys run`, or the step's own "
                           "output); see README 'Incremental runs'")


class EventOptions(PipelineOptions):
    """For the pipelines that read events (extract, encode)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("events")
        group.add_argument("--min_timestamp", default=DEFAULT_WINDOW_START,
                           help="events before this time (ISO-8601, UTC) go to the dead letters as "
                           f"implausible_timestamp (default {DEFAULT_WINDOW_START})")
        group.add_argument("--max_timestamp", default=DEFAULT_WINDOW_END,
                           help=f"... and events at or after this one (default {DEFAULT_WINDOW_END})")


def time_window(options: PipelineOptions) -> TimeWindow:
    """The plausible-timestamp window given by --min_timestamp / --max_timestamp."""
    opts = options.view_as(EventOptions)
    return TimeWindow.between(opts.min_timestamp, opts.max_timestamp)


def run_and_summarise(options: PipelineOptions, build: Callable, save_main_session: bool,
                      marker: str = "summary.json", inputs: Iterable[tuple[str, str | None]] = ()) -> dict:
    """Build and run a pipeline, then return the summary (``marker``) its Publish step wrote.

    ``--out`` is claimed first (``journeys.outputs.claim``): refused when it overlaps one of
    ``inputs`` ((option, path) pairs), cannot be written or is held by a live run."""
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        # The DirectRunner would first try to download the Prism runner; this is the same local
        # portable runner, offline, and it honours --direct_running_mode / --direct_num_workers.
        standard.runner = "FnApiRunner"
    options.view_as(SetupOptions).save_main_session = save_main_session
    out = options.view_as(CommonOptions).out
    with outputs.claim(out, inputs):
        pipeline = beam.Pipeline(options=options)
        build(pipeline, options)
        pipeline.run().wait_until_finish()
    fs, path = io.url_to_fs(io.join(out, marker))
    with fs.open(path, "r") as handle:
        return json.load(handle)
