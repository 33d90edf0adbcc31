"""Beam pipeline: journeys -> named journeys, with RunInference and our own ModelHandler.

    read OUT/journeys -> group by user (so one user's names can be made distinct) ->
    RunInference (batched; the namer is loaded once per worker) -> named/ and dead_letter/ -> summary

Beam's huggingface_inference module is not used: it cannot be imported with transformers 5.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from journeys import io, schema
from journeys.embedding import DEFAULT_MODEL
from journeys.naming import NAMERS, Namer, create_namer
from journeys.validation import DeadLetter
from pipelines.options import CommonOptions, run_and_summarise
from pipelines.transforms import Publish, ReadRows, WriteShards

DATASETS = {"named": schema.NAMED_JOURNEYS, "dead_letter": schema.DEAD_LETTER}


class NameOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("journey naming")
        group.add_argument("--namer", default="keywords", choices=NAMERS, help="naming strategy")
        group.add_argument("--model", default=None,
                           help="LLM namers: packaged LLM name, .gguf file, folder or hub id "
                           "(default: smollm2-135m-instruct, or the adapter's base)")
        group.add_argument("--adapter", default=None, help="prompt-tuned / fine-tuned: folder from `journeys tune`")
        group.add_argument("--encoder", default=DEFAULT_MODEL,
                           help="sentence encoder for keywords, grounding and exemplars: the extraction's model")
        group.add_argument("--max_titles", type=int, default=10, help="LLM namers: titles per prompt")
        group.add_argument("--exemplars", type=int, default=3, help="few-shot: exemplars per prompt")
        group.add_argument("--min_grounding", type=float, default=0.2,
                           help="LLM namers: an answer less similar to the journey's centroid falls back to keywords")
        group.add_argument("--batch_size", type=int, default=32, help="users per inference batch")


class _LoadedNamer:
    """What load_model returns: RunInference needs a weak-referenceable object."""

    def __init__(self, namer: Namer):
        self.namer = namer


class NamerHandler(ModelHandler):
    """Each element is one user's journeys; a batch is several users, named in one call."""

    def __init__(self, namer: str, batch_size: int, torch_threads: int, **namer_options):
        self.namer, self.batch_size, self.torch_threads = namer, batch_size, torch_threads
        self.namer_options = namer_options

    def load_model(self) -> _LoadedNamer:
        return _LoadedNamer(create_namer(self.namer, torch_threads=self.torch_threads, **self.namer_options))

    def run_inference(self, batch: Sequence[list[dict]], model: _LoadedNamer,
                      inference_args=None) -> Iterable[PredictionResult]:
        results = model.namer.name([journey for user_journeys in batch for journey in user_journeys])
        start = 0
        for user_journeys in batch:
            yield PredictionResult(user_journeys, results[start:start + len(user_journeys)])
            start += len(user_journeys)

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}


def namer_options(opts: NameOptions) -> dict:
    options = {"encoder": opts.encoder}
    if opts.namer != "keywords":
        options |= {"model": opts.model, "adapter": opts.adapter, "max_titles": opts.max_titles,
                    "exemplars": opts.exemplars, "min_grounding": opts.min_grounding}
    return options


def _named_records(prediction: PredictionResult):
    for journey, result in zip(prediction.example, prediction.inference):
        named = asdict(result)
        yield {
            **{k: journey[k] for k in schema.JOURNEYS.names},
            "name": named["name"], "naming_strategy": named["strategy"], "naming_model": named["model"],
            "adapter": named["adapter"], "template_version": named["template_version"],
            "grounding": named["grounding"], "fell_back": named["fell_back"],
            "fallback_reason": named["fallback_reason"],
        }


def _failed_batch(failure):
    batch, error = failure
    for user_journeys in batch:
        for journey in user_journeys:
            yield DeadLetter("journeys", "naming_failed", f"{type(error).__name__}: {error}",
                             {"journey_id": journey["journey_id"]}, journey["user_id"], None).to_record()


class _Summarise:
    def __init__(self, config: dict):
        self.config = config

    def __call__(self, counts: dict[str, int]) -> dict:
        return {"schema_version": schema.SCHEMA_VERSION, "config": self.config,
                "journeys_read": counts.get("read", 0), "named": counts.get("named", 0),
                "failed": counts.get("failed", 0),
                "balanced": counts.get("read", 0) == counts.get("named", 0) + counts.get("failed", 0)}


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    opts, common = options.view_as(NameOptions), options.view_as(CommonOptions)
    staging = io.join(common.out, f"_staging-{uuid.uuid4().hex[:12]}")
    journeys = (
        pipeline | "ReadJourneys" >> ReadRows(common.journeys)
        | "Rows" >> beam.Map(lambda parsed: parsed[0])
    )
    per_user = (
        journeys
        | "KeyByUser" >> beam.Map(lambda j: (j["user_id"], j))
        | "GroupByUser" >> beam.GroupByKey()
        | "InTimeOrder" >> beam.Map(lambda kv: sorted(kv[1], key=lambda j: (j["first_ts"], j["journey_id"])))
    )
    handler = NamerHandler(opts.namer, opts.batch_size, common.torch_threads, **namer_options(opts))
    main, failures = per_user | "Name" >> RunInference(handler).with_exception_handling()
    named = main | "ToRecords" >> beam.FlatMap(_named_records)
    dead = failures.failed_inferences | "FailedToDeadLetters" >> beam.FlatMap(_failed_batch)
    written = (
        (
            named | "WriteNamed" >> WriteShards(io.join(staging, "named"), schema.NAMED_JOURNEYS, "user_id",
                                                ("user_id", "first_ts", "journey_id"), 4),
            dead | "WriteDeadLetters" >> WriteShards(io.join(staging, "dead_letter"), schema.DEAD_LETTER,
                                                     "user_id", ("user_id", "row"), 4),
        )
        | "AllWritten" >> beam.Flatten()
    )
    counts = (
        (
            journeys | "CountRead" >> beam.Map(lambda _: ("read", 1)),
            named | "CountNamed" >> beam.Map(lambda _: ("named", 1)),
            dead | "CountFailed" >> beam.Map(lambda _: ("failed", 1)),
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    config = {"journeys": common.journeys, "namer": opts.namer, **namer_options(opts)}
    _ = (
        pipeline
        | "PublishTrigger" >> beam.Create([None])
        | "Publish" >> beam.ParDo(Publish(common.out, staging, DATASETS, time.time(), _Summarise(config)),
                                  written=beam.pvalue.AsList(written), counts=beam.pvalue.AsList(counts))
    )


def run(argv: list[str] | None = None, save_main_session: bool = True) -> dict:
    """Name the journeys and return the summary (also written to ``OUT/summary.json``)."""
    options = PipelineOptions(argv)
    opts, common = options.view_as(NameOptions), options.view_as(CommonOptions)
    for name, value in (("journeys", common.journeys), ("out", common.out)):
        if not value:
            raise ValueError(f"--{name} is required")
    io.list_input_files(common.journeys)  # a clear error now if the dataset is missing
    if opts.namer in ("prompt-tuned", "fine-tuned") and not opts.adapter:
        raise ValueError(f"the {opts.namer} namer needs --adapter: a folder made by `journeys tune`")
    if opts.adapter:
        from journeys.naming.llm import check_adapter

        check_adapter(opts.namer, opts.adapter)
    if opts.namer != "keywords":
        from journeys import llms
        from journeys.naming.generation import base_of

        # A missing package fails here, before any work; a packaged or GGUF model is converted here,
        # once, rather than by several workers at the same time.
        llms.resolve_model(base_of(opts.model, opts.adapter))
    return run_and_summarise(options, build, save_main_session)
