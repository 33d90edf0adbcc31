"""Options shared by every pipeline. Beam registers all PipelineOptions subclasses' flags in one
parser, so a flag is declared once, here, and each pipeline reads it with ``view_as``."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.runners.runner import PipelineState

from journeys import io, outputs
from journeys.validation import DEFAULT_WINDOW_END, DEFAULT_WINDOW_START, TimeWindow


class CommonOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("every step")
        group.add_argument("--out", help="output folder (local or gs://)")
        group.add_argument("--torch_threads", type=int, default=0,
                           help="torch threads per worker; 0 (default) = auto: on the local runner the machine's "
                           "cores shared among --direct_num_workers workers (or $OMP_NUM_THREADS if set), on a "
                           "remote runner 1 (its workers run one SDK process per core)")
        # Read by more than one pipeline (name, encode; extract, encode), so declared once here.
        group.add_argument("--journeys", help="the journeys/ dataset written by extract")
        group.add_argument("--events", help="events: Parquet, CSV or JSONL file, folder or glob (local or gs://)")
        # Read by extract, name and export: each finds its own part of the earlier run (journeys/previous.py).
        group.add_argument("--previous", default=None,
                           help="an earlier run to build on: its folder (from `journeys run`, or the step's own "
                           "output); see docs/incremental.md")


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


LOCAL_RUNNERS = {"FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"}


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def torch_threads(options: PipelineOptions) -> dict:
    """How many torch threads each worker uses, and why: {"threads", "workers", "cores", "reason"}.

    More torch threads than cores, counted over all workers, makes torch on CPU many times slower,
    and one thread leaves cores idle on a one-worker local run; so the default fills the machine
    without oversubscribing it. Recorded in each step's summary."""
    requested = options.view_as(CommonOptions).torch_threads
    if requested is not None and requested < 0:
        raise ValueError(f"--torch_threads must be 0 (auto) or more, got {requested}")
    cores = usable_cores()
    runner = options.view_as(StandardOptions).runner or "FnApiRunner"
    all_options = options.get_all_options()
    local = runner in LOCAL_RUNNERS
    workers = 1
    if local and all_options.get("direct_running_mode") in ("multi_processing", "multi_threading"):
        workers = all_options.get("direct_num_workers") or cores  # 0 means one per core
    if requested:
        return {"threads": requested, "workers": workers, "cores": cores, "reason": "--torch_threads"}
    if not local:
        return {"threads": 1, "workers": None, "cores": None,
                "reason": f"auto: {runner} runs one SDK process per worker core"}
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return {"threads": int(from_env), "workers": workers, "cores": cores, "reason": "auto: $OMP_NUM_THREADS"}
    return {"threads": max(1, cores // workers), "workers": workers, "cores": cores,
            "reason": f"auto: {cores} cores / {workers} worker(s)"}


class PipelineFailed(RuntimeError):
    """A job on a remote runner ended in another state than done; the message says which."""


def translation_only(options: PipelineOptions) -> str | None:
    """"dry_run" (``--dry_run true``: the runner translates the pipeline and submits nothing),
    "template" (``--template_location``: the job is staged as a template, not run) or None.

    Beam takes any text after --dry_run as true ("false" included), so it is read here: true or
    false, else an error."""
    test = options.view_as(TestOptions)
    if test.dry_run not in (None, False):
        text = str(test.dry_run).strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"--dry_run takes true or false, not {test.dry_run!r}")
        test.dry_run = text in ("true", "1", "yes")
    mode = "dry_run" if test.dry_run else "template" if options.view_as(GoogleCloudOptions).template_location \
        else None
    runner = options.view_as(StandardOptions).runner
    if mode and runner not in ("DataflowRunner", "TestDataflowRunner"):
        flag = "--dry_run" if mode == "dry_run" else "--template_location"
        raise ValueError(f"{flag} is for --runner DataflowRunner (the {runner or 'local'} runner would run the "
                         "whole pipeline)")
    return mode


def describe_translation(result, options: PipelineOptions, mode: str, seconds: float) -> dict:
    """What a dry run or a template staging made of the pipeline: the job's steps (the pipeline's
    top-level transforms), its transforms in all, each worker environment's container and staged
    files, and the template's location."""
    from apache_beam.portability.api import beam_runner_api_pb2

    # A dry run's result carries the job; a template's result has none, its runner does.
    job = getattr(result, "job", None) or getattr(getattr(result, "_runner", None), "job", None)
    described = {"translated": mode, "runner": options.view_as(StandardOptions).runner,
                 "wall_seconds": round(seconds, 2)}
    proto = getattr(job, "proto_pipeline", None)
    if proto is not None:
        transforms = proto.components.transforms
        root = transforms[proto.root_transform_ids[0]]
        described["job_name"] = job.proto.name
        described["steps"] = [transforms[t].unique_name for t in root.subtransforms]
        described["transforms"] = len(transforms)
        environments = []
        for environment in proto.components.environments.values():
            staged = [beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(d.role_payload).staged_name
                      for d in environment.dependencies if d.role_payload]
            image = beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image \
                if environment.urn == "beam:env:docker:v1" else None
            environments.append({"container_image": image, "staged": staged})
        described["environments"] = environments
    if mode == "template":
        described["template_location"] = options.view_as(GoogleCloudOptions).template_location
    return described


def run_and_summarise(options: PipelineOptions, build: Callable, save_main_session: bool,
                      marker: str = "summary.json", inputs: Iterable[tuple[str, str | None]] = ()) -> dict:
    """Build and run a pipeline, then return the summary (``marker``) its Publish step wrote.

    ``--out`` is claimed first (``journeys.outputs.claim``): refused when it overlaps one of
    ``inputs`` ((option, path) pairs), cannot be written or is held by a live run. On a remote
    runner the job is waited for, and the summary read from where the job wrote it (``--out``, e.g.
    gs://); a job that ends in another state than done is a PipelineFailed. With ``--dry_run true``
    or ``--template_location`` nothing runs: the returned dict describes the translated job
    (``describe_translation``, with "translated" set) instead."""
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        # The DirectRunner would first try to download the Prism runner; this is the same local
        # portable runner, offline, and it honours --direct_running_mode / --direct_num_workers.
        standard.runner = "FnApiRunner"
    options.view_as(SetupOptions).save_main_session = save_main_session
    mode = translation_only(options)
    out = options.view_as(CommonOptions).out
    started = time.time()
    with outputs.claim(out, inputs):
        pipeline = beam.Pipeline(options=options)
        build(pipeline, options)
        result = pipeline.run()
        if mode:
            return describe_translation(result, options, mode, time.time() - started)
        state = result.wait_until_finish()
    if state is not None and state != PipelineState.DONE:
        raise PipelineFailed(f"the {standard.runner} job ended in state {state}: nothing was published to '{out}'; "
                             "see the runner's logs")
    fs, path = io.url_to_fs(io.join(out, marker))
    if not fs.exists(path):
        raise PipelineFailed(f"the {standard.runner} job finished but wrote no {marker} to '{out}': see the runner's "
                             "logs")
    with fs.open(path, "r") as handle:
        return json.load(handle)
