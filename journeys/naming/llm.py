"""The LLM namers: few-shot prompting, a prompt-tuned adapter, or a fine-tuned model.

All three build a prompt from the journey's most representative titles and salient terms, generate
in batches (greedily, or a beam search for ``candidates`` answers), and then treat each answer as
untrusted: it is cleaned and validated. The keyword namer's name competes with the valid answers
(``keyword_candidate``): of them all, the one closest to the journey's centroid is kept. A journey
with no valid answer, or whose keyword name wins, gets the keyword name with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from journeys.adapters import DEFAULT_ADAPTER
from journeys.embedding import DEFAULT_MODEL, Embedder
from journeys.naming.base import KEYWORD_CHOSEN, Namer, NameResult
from journeys.naming.generation import Generator, load_generator, read_adapter_metadata
from journeys.naming.grounding import grounding_scores, unit_centroid
from journeys.naming.keywords import KeywordNamer, KeywordNamerConfig, display, original_casing
from journeys.naming.prompting import (
    ExemplarBank,
    fields_for,
    journey_inputs,
    load_exemplars,
    render_exemplars,
    template_from_id,
)
from journeys.naming.validation import clean, dedupe, problem
from prompts import FEW_SHOT

# Which tuning methods each tuned strategy accepts.
METHODS = {"prompt-tuned": ("prompt",), "fine-tuned": ("lora", "full")}


@dataclass(frozen=True)
class LLMNamerConfig:
    strategy: str = field(default="few-shot", metadata={"help": "few-shot | prompt-tuned | fine-tuned"})
    model: str | None = field(default=None, metadata={
        "help": "registered LLM, .gguf file, folder or hub id (default: the adapter's base, else the default LLM)"})
    adapter: str | None = field(default=None, metadata={"help": "folder written by `journeys tune`"})
    encoder: str = field(default=DEFAULT_MODEL, metadata={"help": "sentence encoder of the journeys"})
    max_titles: int = field(default=10, metadata={"help": "titles in the prompt, most representative first"})
    max_keywords: int = field(default=6, metadata={"help": "salient terms in the prompt"})
    prompt_inputs: str = field(default="both", metadata={"help": "titles | terms | both, in the prompt"})
    exemplars: int = field(default=3, metadata={"help": "few-shot exemplars, nearest the journey first"})
    exemplar_bank: str | None = field(default=None, metadata={"help": "JSONL bank (default: the curated one)"})
    min_grounding: float = field(default=0.2, metadata={"help": "answers less similar to the journey fall back"})
    max_new_tokens: int = field(default=12, metadata={"help": "longest answer generated"})
    batch_size: int = field(default=16, metadata={"help": "prompts per generate() call"})
    candidates: int = field(default=1, metadata={
        "help": "answers generated per journey (a beam search that wide); the valid one closest to the "
                "journey is kept. 1: greedy"})
    quantize: str = field(default="none", metadata={
        "help": "int8: dynamic int8 quantisation of the model's Linear layers (CPU); none: float32"})
    skip_grounded: float | None = field(default=None, metadata={
        "help": "journeys whose keyword name is grounded at least this much keep it without asking the model "
                "(None: the model names every journey)"})
    keyword_candidate: bool = field(default=True, metadata={
        "help": "the keyword namer's name competes with the model's valid answers and is kept when it is "
                "closer to the journey (recorded as a fallback with that reason); False: only the model's "
                "answers, the keyword name is the fallback alone"})

    def __post_init__(self):
        if self.strategy not in ("few-shot", *METHODS):
            raise ValueError(f"unknown LLM strategy '{self.strategy}'")
        if self.strategy == "fine-tuned" and not self.adapter:  # the adapter that ships in the package
            object.__setattr__(self, "adapter", DEFAULT_ADAPTER)
        if self.strategy in METHODS and not self.adapter:
            raise ValueError(f"the {self.strategy} namer needs --adapter: a folder made by `journeys tune`")
        if self.quantize not in ("none", "int8"):
            raise ValueError(f"quantize must be none or int8, not '{self.quantize}'")
        if self.prompt_inputs not in ("titles", "terms", "both"):
            raise ValueError("prompt_inputs must be titles, terms or both")
        if min(self.max_titles, self.max_new_tokens, self.batch_size, self.candidates) < 1 or self.exemplars < 0:
            raise ValueError("max_titles, max_new_tokens, batch_size and candidates must be positive, exemplars >= 0")


def check_adapter(strategy: str, adapter: str) -> None:
    """A clear error, before any model is loaded, when an adapter does not fit the strategy."""
    method = read_adapter_metadata(adapter).get("method")
    if strategy not in METHODS or method not in METHODS[strategy]:
        fits = next((s for s, methods in METHODS.items() if method in methods), None)
        raise ValueError(f"{adapter} was tuned with method '{method}', so it is not a {strategy} namer"
                         + (f"; use --namer {fits}" if fits else ""))


class LLMNamer(Namer):
    def __init__(self, config: LLMNamerConfig, embedder: Embedder | None = None,
                 generator: Generator | None = None, torch_threads: int | None = None):
        self.config = config
        self.strategy = config.strategy
        self.embedder = embedder or Embedder(config.encoder)
        self.fallback = KeywordNamer(KeywordNamerConfig(model=config.encoder), self.embedder)
        if config.adapter:
            check_adapter(config.strategy, config.adapter)
        self.generator = generator or load_generator(config.model, config.adapter, torch_threads,
                                                        quantize=config.quantize == "int8")
        if config.strategy == "few-shot":
            self.template = template_from_id(FEW_SHOT)
            self.bank = ExemplarBank(load_exemplars(config.exemplar_bank), self.embedder.encode)
        else:
            self.template = template_from_id(self.generator.metadata["template"])
            self.bank = None
            # A tuned namer is asked in the shape it was trained on: the same number of titles and terms
            # (fewer titles if asked for, a speed lever: shorter prompts).
            trained = self.generator.metadata.get("config", {})
            self.config = replace(self.config, max_titles=min(trained.get("max_titles", config.max_titles),
                                                              config.max_titles),
                                  max_keywords=trained.get("max_keywords", config.max_keywords))

    def prompt(self, journey: dict) -> str:
        titles, keywords = journey_inputs(journey, self.config.max_titles, self.config.max_keywords)
        titles = [] if self.config.prompt_inputs == "terms" else titles
        keywords = [] if self.config.prompt_inputs == "titles" else keywords
        values = fields_for(titles, keywords)
        if self.bank is not None:
            centroid = unit_centroid(journey, self.embedder.dimension)
            values["exemplars"] = render_exemplars(self.bank.nearest(centroid, self.config.exemplars),
                                                   self.config.max_titles)
        return self.template.render(**values)

    def _valid_answers(self, journey: dict, answers: list[str]) -> tuple[list[str], str | None]:
        """The answers that pass validation, cleaned, in beam order; and why the first that failed did."""
        titles = list(journey.get("representative_titles", []))
        valid, first_reason = [], None
        for answer in answers:
            name = clean(answer)
            if name and name == name.lower():  # show "uk punk" as the titles write it: "UK Punk"
                name = display(name, original_casing(titles))
            reason = problem(name, titles, self.template.instruction)
            if reason is None:
                if name not in valid:
                    valid.append(name)
            elif first_reason is None:
                first_reason = f"model answer rejected ({reason}): {answer.strip()[:80]!r}"
        return valid, first_reason

    def _most_grounded(self, journeys: list[dict], valid: list[list[str]]) -> list[str | None]:
        """Per journey, the valid answer closest to its centroid (the earlier one on a tie), or None:
        a wider search can trade a fluent but narrow answer for a central one. Only journeys with a
        choice to make are scored, in one encoder call."""
        contested = [(index, name) for index, names in enumerate(valid) if len(names) > 1 for name in names]
        scores = grounding_scores(self.embedder, [name for _, name in contested], [journeys[i] for i, _ in contested])
        chosen = [names[0] if names else None for names in valid]
        best = {}
        for (index, name), score in zip(contested, scores):  # in order: an equal score does not win
            if score > best.get(index, float("-inf")):
                best[index], chosen[index] = score, name
        return chosen

    def name(self, journeys: list[dict]) -> list[NameResult]:
        if not journeys:
            return []
        keyword_results = self.fallback.name(journeys)
        keyword_names = [r.name for r in keyword_results]
        # A keyword name already this close to the journey is kept without asking the model: the time
        # goes to the journeys where a model answer can still win.
        threshold = self.config.skip_grounded
        asked = [i for i, r in enumerate(keyword_results) if threshold is None or r.grounding < threshold]
        answered = self.generator.generate_candidates([self.prompt(journeys[i]) for i in asked],
                                                      self.config.batch_size, self.config.max_new_tokens,
                                                      self.config.candidates)
        generated = [[] for _ in journeys]
        for index, options in zip(asked, answered):
            generated[index] = options
        checked = [self._valid_answers(journey, options) for journey, options in zip(journeys, generated)]
        answers = [names for names, _ in checked]  # the model's valid answers per journey
        reasons = [None if names else reason for names, (_, reason) in zip(answers, checked)]
        skipped = set(range(len(journeys))) - set(asked)
        for index in skipped:
            reasons[index] = (f"{KEYWORD_CHOSEN} (grounded {keyword_results[index].grounding:.2f} >= "
                              f"{threshold}: the model was not asked)")
        candidates = answers
        if self.config.keyword_candidate:
            # The keyword name is one more candidate, after the model's (a tie keeps the model's): a
            # model answer replaces it only where the answer is closer to the journey's items.
            candidates = [names + [keyword] if names and keyword not in names else names
                          for names, keyword in zip(answers, keyword_names)]
        chosen = self._most_grounded(journeys, candidates)
        for index, name in enumerate(chosen):
            if name is not None and name not in answers[index]:
                reasons[index] = (f"{KEYWORD_CHOSEN} (closer to the journey than every model answer): "
                                  f"{answers[index][0]!r}")
        names = [name or keyword_name for name, keyword_name in zip(chosen, keyword_names)]
        # A well-formed answer can still be about something else (an untrained model's word salad).
        for index, score in enumerate(grounding_scores(self.embedder, names, journeys)):
            if reasons[index] is None and score < self.config.min_grounding:
                reasons[index] = (f"model answer rejected (not grounded: {score:.2f} < {self.config.min_grounding})"
                                  f": {names[index]!r}")
                names[index] = keyword_names[index]
        # A second pass makes one user's names distinct, trying the keyword name before numbering.
        names = dedupe(names, [j["user_id"] for j in journeys], [[k] for k in keyword_names])
        scores = grounding_scores(self.embedder, names, journeys)
        return [
            NameResult(journey_id=journey["journey_id"], name=name, strategy=self.strategy,
                       model=self.generator.model_identity, adapter=self.generator.adapter_identity,
                       template_version=self.template.id, grounding=score, fell_back=reason is not None,
                       fallback_reason=reason)
            for journey, name, score, reason in zip(journeys, names, scores, reasons)
        ]
