"""How the LLM answers a UQABench question, and the training loss that goes with it.

- ``letter`` (UQABench's own): the options are listed in the prompt as (A)..(D) and the LLM writes
  the letter (greedy decoding); the loss is on the letter's token.
- ``option``: the options are not listed; each option's text is scored by its log-likelihood after
  the question (summed over its tokens), and the most likely option's letter is the answer, as
  lm-evaluation-harness scores multiple choice. The loss is the cross-entropy over the four scores.
- ``option-pmi`` (the default): the same, minus each option's log-likelihood under the frozen LLM
  after the question alone (no user, no adapter, no LoRA, no history). Without it, short and common
  option texts win whatever the user is (the "surface form competition" of Holtzman et al., 2021);
  with it, an option scores by how much the user makes it more likely.

Why not only ``letter``: models of this size do not bind an answer to its letter. Measured on the
60-user sample with SmolLM2-135M-Instruct, zero-shot, the history written out moved letter
accuracy by a few points while it moved option-likelihood accuracy by more than 20; alignment with
the letter loss learned the answer priors before it learned to read (docs/uqabench.md).

The predictions are letters in every mode, so UQABench's scoring rule is the same for all.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from journeys.uqa_questions import LETTERS
from tuning.uqa_adapters import UserLLM
from tuning.uqa_llm import PromptBuilder, left_pad

ANSWERS = ("letter", "option", "option-pmi")
DEFAULT_ANSWER = "option-pmi"


def check_answer(answer: str) -> None:
    if answer not in ANSWERS:
        raise ValueError(f"unknown answer mode '{answer}': choose one of {', '.join(ANSWERS)}")


def option_log_likelihoods(model: UserLLM, builder: PromptBuilder, questions: list[dict], prompts: list[list[int]],
                           states: torch.Tensor | None = None, state_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[questions, 4]: the summed log-probability of each option's tokens (A..D) after its question's
    prompt; each prompt runs once for its four options. Gradients flow when they are enabled."""
    ids, mask = left_pad(prompts, builder.tokenizer.pad_token_id)
    options = [builder.option(q, letter) for q in questions for letter in LETTERS]
    return model.continuation_log_likelihoods(ids, mask, options, states, state_mask, builder.tokenizer.pad_token_id)


@contextmanager
def frozen_llm(model: UserLLM):
    """The base LLM alone: LoRA switched off (PEFT's ``disable_adapter``) and no adapter (a
    cross-attention adapter's hooks pass through without a user)."""
    disable = getattr(model.llm, "disable_adapter", None)
    with disable() if disable is not None else nullcontext():
        yield UserLLM(model.llm)


class OptionScorer:
    """Scores of the four options per question for one answer mode; the frozen LLM's no-user scores
    (``option-pmi``) are computed once per question and kept."""

    def __init__(self, answer: str, builder: PromptBuilder, references: dict | None = None):
        """``references``: a store of no-user scores to share with other scorers of the same frozen
        LLM and question set (the benchmark's rows, which would otherwise each compute them again)."""
        check_answer(answer)
        if answer == "letter":
            raise ValueError("the letter mode generates its answer: there are no option scores")
        self.answer, self.builder = answer, builder
        self._reference: dict[str, torch.Tensor] = {} if references is None else references

    def scores(self, model: UserLLM, questions: list[dict], prompts: list[list[int]], states=None,
               state_mask=None) -> torch.Tensor:
        scores = option_log_likelihoods(model, self.builder, questions, prompts, states, state_mask)
        if self.answer == "option-pmi":
            scores = scores - self.reference(model, questions)
        return scores

    def reference(self, model: UserLLM, questions: list[dict]) -> torch.Tensor:
        missing = list({q["question_id"]: q for q in questions if q["question_id"] not in self._reference}.values())
        if missing:
            with torch.no_grad(), frozen_llm(model) as base:
                prompts = [self.builder.prompt(q, None, options=False) for q in missing]
                for question, row in zip(missing, option_log_likelihoods(base, self.builder, missing, prompts)):
                    self._reference[question["question_id"]] = row
        return torch.stack([self._reference[q["question_id"]] for q in questions])

    def loss(self, scores: torch.Tensor, questions: list[dict]) -> torch.Tensor:
        gold = torch.tensor([LETTERS.index(q["answer"]) for q in questions])
        return torch.nn.functional.cross_entropy(scores, gold)


def chosen_letters(scores: torch.Tensor) -> list[str]:
    """The letter of the best-scoring option per question (a tie goes to the earlier letter)."""
    return [LETTERS[i] for i in scores.argmax(-1).tolist()]
