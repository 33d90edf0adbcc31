"""Beam pipeline: journeys -> named journeys, with RunInference and our own ModelHandler.

    read OUT/journeys -> group by user (so one user's names can be made distinct), with the user's
    named journeys from --previous -> carry over the names of journeys that continue unchanged enough
    -> RunInference on the rest (batched; the namer is loaded once per worker) -> named/ and
    dead_letter/ -> summary

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

from journeys import io, previous, schema
from journeys.adapters import DEFAULT_ADAPTER
from journeys.embedding import DEFAULT_MODEL, Embedder
from journeys.inputs import check_dataset
from journeys.lineage import CHANGED, STATUSES, CarryConfig, carry_or_rename, needs_naming
from journeys.naming import NAMERS, Namer, create_namer
from journeys.validation import DeadLetter
from pipelines.options import CommonOptions, run_and_summarise, torch_threads
from pipelines.transforms import Publish, ReadRows, WriteShards, own_row

# The defaults of the LLM namers in this pipeline, chosen by measurement (docs/naming.md, "Speed").
DEFAULT_CANDIDATES = 1
DEFAULT_QUANTIZE = "int8"
DEFAULT_SKIP_GROUNDED = 0.8

DATASETS = {"named": schema.NAMED_JOURNEYS, "dead_letter": schema.DEAD_LETTER}


class NameOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("journey naming")
        group.add_argument("--namer", default="keywords", choices=NAMERS,
                           help="naming strategy (fine-tuned without --adapter: the packaged adapter)")
        group.add_argument("--model", default=None,
                           help="LLM namers: packaged LLM name, .gguf file, folder or hub id "
                           "(default: smollm2-135m-instruct, or the adapter's base)")
        group.add_argument("--adapter", default=None,
                           help="prompt-tuned / fine-tuned: folder from `journeys tune`, or a packaged adapter "
                           "(default for fine-tuned: smollm2-namer)")
        group.add_argument("--encoder", default=DEFAULT_MODEL,
                           help="sentence encoder for keywords, grounding and exemplars: the extraction's model")
        group.add_argument("--max_titles", type=int, default=10, help="LLM namers: titles per prompt")
        group.add_argument("--exemplars", type=int, default=3, help="few-shot: exemplars per prompt")
        group.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                           help="LLM namers: answers per journey from a beam search that wide; the valid one "
                           "closest to the journey is kept (1: greedy)")
        group.add_argument("--model_answers_only", action="store_true",
                           help="LLM namers: keep the model's answer even where the keyword name is closer to "
                           "the journey (the keyword name is then only the fallback)")
        group.add_argument("--quantize", default=DEFAULT_QUANTIZE, choices=["none", "int8"],
                           help="LLM namers: int8 dynamic quantisation of the model's Linear layers (CPU)")
        group.add_argument("--skip_grounded", type=float, default=DEFAULT_SKIP_GROUNDED,
                           help="LLM namers: a journey whose keyword name is grounded at least this much keeps it "
                           "without asking the model (above 1: ask the model for every journey)")
        group.add_argument("--min_grounding", type=float, default=0.2,
                           help="LLM namers: an answer less similar to the journey's centroid falls back to keywords")
        group.add_argument("--batch_size", type=int, default=32, help="users per inference batch")
        group.add_argument("--max_new_share", type=float, default=CarryConfig.max_new_share,
                           help="--previous: rename a journey when more than this share of its items is new")
        group.add_argument("--min_carry_grounding", type=float, default=CarryConfig.min_grounding,
                           help="--previous: rename a journey when its previous name's grounding on the new "
                           "centroid is below this")


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
                    "exemplars": opts.exemplars, "min_grounding": opts.min_grounding, "candidates": opts.candidates,
                    "keyword_candidate": not opts.model_answers_only, "quantize": opts.quantize,
                    "skip_grounded": opts.skip_grounded if opts.skip_grounded <= 1 else None}
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
            "status": journey["_status"], "naming_decision": "named", "naming_reason": journey["_reason"],
        }


_CARRIED_FIELDS = ("name", "naming_strategy", "naming_model", "adapter", "template_version", "fell_back",
                   "fallback_reason")


class _DistinctNames(beam.DoFn):
    """(user_id, named records) -> the user's records with distinct names: carried names stay
    (consumers already hold them); a fresh name that repeats one is numbered, as the namers number
    their own repeats, and grounded again, so that a record's grounding is always its name's."""

    def __init__(self, encoder: str, torch_threads: int):
        self.encoder, self.torch_threads, self.embedder = encoder, torch_threads, None

    def process(self, element):
        from journeys.naming.grounding import grounding_scores
        from journeys.naming.validation import dedupe

        _, records = element
        ordered = sorted(records, key=lambda r: (r["naming_decision"] != "carried", r["first_ts"], r["journey_id"]))
        names = dedupe([r["name"] for r in ordered], [r["user_id"] for r in ordered], [[] for _ in ordered])
        renamed = [index for index, (record, name) in enumerate(zip(ordered, names)) if name != record["name"]]
        if renamed:
            if self.embedder is None:  # loaded only when some user's names repeat
                self.embedder = Embedder(self.encoder, torch_threads=self.torch_threads)
            scores = grounding_scores(self.embedder, [names[i] for i in renamed], [ordered[i] for i in renamed])
            for index, score in zip(renamed, scores):
                ordered[index] = {**ordered[index], "name": names[index], "grounding": score}
        yield from ordered


class _CarryOver(beam.DoFn):
    """(user_id, {"journeys": [...], "previous": [named]}) -> named records whose previous name is carried
    over (tagged "carried"; the namer is not called for them) and, as the main output, the user's list of
    journeys to name afresh, each with its status and the reason (``_status``, ``_reason``).

    ``reuse_grounding``: the previous run grounded its names with this run's encoder, so a journey
    whose centroid is unchanged (every journey of a user that a delta run carried) keeps its name's
    recorded grounding; only names on a moved centroid are embedded again."""

    def __init__(self, strategy: str, encoder: str, config: CarryConfig, torch_threads: int, previous_run: bool,
                 reuse_grounding: bool = False):
        self.strategy, self.encoder, self.config, self.torch_threads = strategy, encoder, config, torch_threads
        self.previous_run, self.reuse_grounding, self.embedder = previous_run, reuse_grounding, None

    def process(self, element):
        _, grouped = element
        journeys = sorted(grouped["journeys"], key=lambda j: (j["first_ts"], j["journey_id"]))
        previous_by_id = {p["journey_id"]: p for p in grouped["previous"]}
        to_name, candidates = [], []
        for journey in journeys:
            previous_named = previous_by_id.get(journey["journey_id"])
            rename, status, reason = needs_naming(journey, previous_named, self.strategy, self.config,
                                                  self.previous_run)
            if rename:
                to_name.append({**journey, "_status": status, "_reason": reason})
            else:
                candidates.append((journey, previous_named, reason))
        for (journey, previous_named, reason), score in zip(candidates, self._groundings(candidates)):
            if isinstance(score, str):  # why it cannot be computed: the namer dead-letters the journey
                to_name.append({**journey, "_status": CHANGED, "_reason": score})
                continue
            carried, status, reason = carry_or_rename(score, reason, self.config)
            if not carried:
                to_name.append({**journey, "_status": status, "_reason": reason})
                continue
            yield beam.pvalue.TaggedOutput("carried", {
                **{k: journey[k] for k in schema.JOURNEYS.names},
                **{k: previous_named[k] for k in _CARRIED_FIELDS}, "grounding": score,
                "status": status, "naming_decision": "carried", "naming_reason": reason,
            })
        if to_name:
            to_name.sort(key=lambda j: (j["first_ts"], j["journey_id"]))
            yield to_name

    def _groundings(self, candidates: list[tuple[dict, dict, str]]) -> list[float | str]:
        """Each previous name's grounding on its journey's centroid now, or why it cannot be computed."""
        scores: list[float | str | None] = [
            previous_named["grounding"] if self.reuse_grounding and previous_named["centroid"] == journey["centroid"]
            else None
            for journey, previous_named, _ in candidates]
        moved = [index for index, score in enumerate(scores) if score is None]
        if not moved:
            return scores
        from journeys.naming.grounding import grounding_scores

        if self.embedder is None:  # loaded only when some name must be grounded again
            self.embedder = Embedder(self.encoder, torch_threads=self.torch_threads)
        try:
            fresh = grounding_scores(self.embedder, [candidates[i][1]["name"] for i in moved],
                                     [candidates[i][0] for i in moved])
        except ValueError as err:  # e.g. a centroid of the wrong width
            fresh = [f"previous name's grounding cannot be computed: {err}"] * len(moved)
        for index, score in zip(moved, fresh):
            scores[index] = score
        return scores


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
                "balanced": counts.get("read", 0) == counts.get("named", 0) + counts.get("failed", 0),
                # With --previous: journeys given to the namer, and names carried over without it.
                "sent_to_namer": counts.get("sent_to_namer", 0), "carried_over": counts.get("carried", 0),
                "status": {s: counts.get(f"status.{s}", 0) for s in STATUSES[:-1]}}


def build(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    opts, common = options.view_as(NameOptions), options.view_as(CommonOptions)
    staging = io.join(common.out, f"_staging-{uuid.uuid4().hex[:12]}")
    journeys = (
        pipeline | "ReadJourneys" >> ReadRows(common.journeys)
        | "Rows" >> beam.Map(own_row)
    )
    keyed = journeys | "KeyByUser" >> beam.Map(lambda j: (j["user_id"], j))
    if common.previous:
        previous_named = (
            pipeline | "ReadPrevious" >> ReadRows(previous.named_folder(common.previous))
            | "PreviousRows" >> beam.Map(own_row)
            | "KeyPreviousByUser" >> beam.Map(lambda j: (j["user_id"], j))
        )
        per_user = {"journeys": keyed, "previous": previous_named} | "GroupByUser" >> beam.CoGroupByKey()
    else:
        per_user = (
            keyed
            | "GroupByUser" >> beam.GroupByKey()
            | "NoPrevious" >> beam.MapTuple(lambda user, journeys: (user, {"journeys": journeys, "previous": []}))
        )
    carry = CarryConfig(opts.max_new_share, opts.min_carry_grounding)
    threads = torch_threads(options)
    # Names grounded by the same encoder keep their grounding where the centroid has not moved.
    reuse = bool(common.previous) and previous.named_encoder(common.previous) == opts.encoder
    carry_over = _CarryOver(opts.namer, opts.encoder, carry, threads["threads"], bool(common.previous), reuse)
    split = per_user | "CarryOver" >> beam.ParDo(carry_over).with_outputs("carried", main="to_name")
    handler = NamerHandler(opts.namer, opts.batch_size, threads["threads"], **namer_options(opts))
    main, failures = split.to_name | "Name" >> RunInference(handler).with_exception_handling()
    named = (
        (main | "ToRecords" >> beam.FlatMap(_named_records), split.carried)
        | "AllNamed" >> beam.Flatten()
    )
    if common.previous:  # a fresh name may repeat a carried one of the same user
        named = (
            named
            | "KeyNamedByUser" >> beam.Map(lambda r: (r["user_id"], r))
            | "GroupNamedByUser" >> beam.GroupByKey()
            | "DistinctNames" >> beam.ParDo(_DistinctNames(opts.encoder, threads["threads"]))
        )
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
            named | "CountStatus" >> beam.Map(lambda r: (f"status.{r['status']}", 1)),
            split.carried | "CountCarried" >> beam.Map(lambda _: ("carried", 1)),
            split.to_name | "CountSent" >> beam.Map(lambda user_journeys: ("sent_to_namer", len(user_journeys))),
            dead | "CountFailed" >> beam.Map(lambda _: ("failed", 1)),
        )
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    config = {"journeys": common.journeys, "namer": opts.namer, **namer_options(opts), "previous": common.previous,
              "max_new_share": carry.max_new_share, "min_carry_grounding": carry.min_grounding,
              "torch_threads": threads}
    _ = (
        pipeline
        | "PublishTrigger" >> beam.Create([None])
        | "Publish" >> beam.ParDo(Publish(common.out, staging, DATASETS, time.time(), _Summarise(config)),
                                  written=beam.pvalue.AsList(written), counts=beam.pvalue.AsList(counts))
    )


def run(argv: list[str] | None = None, save_main_session: bool = True, inputs_written: bool = True) -> dict:
    """Name the journeys and return the summary (also written to ``OUT/summary.json``).
    ``inputs_written=False``: --journeys is the output of an extraction that a dry run only
    translated (``journeys run --dry_run true``), so it is not there to check."""
    options = PipelineOptions(argv)
    opts, common = options.view_as(NameOptions), options.view_as(CommonOptions)
    for name, value in (("journeys", common.journeys), ("out", common.out)):
        if not value:
            raise ValueError(f"--{name} is required")
    # A clear error now, before any model is loaded: a missing or incomplete journeys/ folder, or
    # another dataset (transient/, dead_letter/) passed by mistake.
    if inputs_written:
        check_dataset(common.journeys, schema.JOURNEYS, "journeys",
                      "pass the journeys/ folder written by `journeys extract`")
    CarryConfig(opts.max_new_share, opts.min_carry_grounding)
    if common.previous:
        previous.previous_named(common.previous)  # refused now if it cannot be built on
    if opts.namer == "prompt-tuned" and not opts.adapter:
        raise ValueError(f"the {opts.namer} namer needs --adapter: a folder made by `journeys tune`")
    adapter = opts.adapter
    if opts.namer == "fine-tuned" and not adapter:
        adapter = DEFAULT_ADAPTER  # the packaged one; a damaged or missing file is refused here
    if adapter:
        from journeys.naming.llm import check_adapter

        check_adapter(opts.namer, adapter)
    if opts.namer != "keywords":
        from journeys import llms
        from journeys.naming.generation import base_of

        # A missing package fails here, before any work; a packaged or GGUF model is converted here,
        # once, rather than by several workers at the same time.
        llms.resolve_model(base_of(opts.model, adapter))
    return run_and_summarise(options, build, save_main_session,
                             inputs=[("--journeys", common.journeys), ("--adapter", opts.adapter),
                                     ("--previous", common.previous)])
