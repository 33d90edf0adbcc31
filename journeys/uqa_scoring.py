"""UQABench scoring: a prediction is correct when the generated text starts with the gold letter;
accuracy per sub-task, per dimension and overall, with bootstrap intervals over users.

As in UQABench, nothing is normalised: no stripping, no case folding. " B" and "b" are wrong for
"B". That keeps the rule identical across models and puts the burden of answering in the required
format on the model (and on the alignment step that teaches it), which is what the benchmark measures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from journeys.uqa_questions import SUBTASKS


def score(prediction: str | None, gold: str) -> bool:
    """True when ``prediction`` starts with ``gold`` (a missing prediction is wrong)."""
    if not gold:
        raise ValueError("a question's gold answer cannot be empty")
    return isinstance(prediction, str) and prediction.startswith(gold)


def _cell(correct: int, total: int, missing: int) -> dict:
    return {"correct": correct, "total": total, "missing": missing,
            "accuracy": round(correct / total, 4) if total else None}


def accuracy(questions: Iterable[dict], predictions: Mapping[str, str]) -> dict:
    """Accuracy per sub-task, per dimension and overall (each over questions, not averaged over
    sub-tasks), from the question records and ``{question_id: generated text}``. A question with no
    prediction counts as wrong and is also counted under ``missing``; a prediction for a question
    that is not in the set is an error (it usually means predictions for another question set)."""
    tallies: dict[tuple[str, str], list[int]] = {}
    seen: set[str] = set()
    for question in questions:
        qid = question["question_id"]
        seen.add(qid)
        prediction = predictions.get(qid)
        tally = tallies.setdefault((question["dimension"], question["subtask"]), [0, 0, 0])
        tally[0] += score(prediction, question["answer"])
        tally[1] += 1
        tally[2] += prediction is None
    unknown = sorted(set(predictions) - seen)
    if unknown:
        raise ValueError(f"{len(unknown)} predictions are for questions not in the set (first: {unknown[0]!r})")

    def total(keys) -> dict:
        sums = [sum(tallies[k][i] for k in keys) for i in range(3)]
        return _cell(*sums)

    order = list(SUBTASKS)
    subtasks = sorted(tallies, key=lambda key: order.index(key[1]))
    dimensions = list(dict.fromkeys(dimension for dimension, _ in subtasks))
    return {
        "overall": total(list(tallies)),
        "dimensions": {d: total([k for k in subtasks if k[0] == d]) for d in dimensions},
        "subtasks": {k[1]: _cell(*tallies[k]) for k in subtasks},
    }


def _user_tallies(questions: list[dict], predictions: Mapping[str, str], cells: list[str]):
    """Per user and cell: (correct, total), as arrays [users, cells]."""
    users = sorted({q["user_id"] for q in questions})
    row = {u: i for i, u in enumerate(users)}
    column = {c: j for j, c in enumerate(cells)}
    correct, total = np.zeros((len(users), len(cells))), np.zeros((len(users), len(cells)))
    for question in questions:
        right = score(predictions.get(question["question_id"]), question["answer"])
        for cell in ("overall", question["dimension"], question["subtask"]):
            correct[row[question["user_id"]], column[cell]] += right
            total[row[question["user_id"]], column[cell]] += 1
    return correct, total


def intervals(questions: Iterable[dict], predictions: Mapping[str, str], reference: Mapping[str, str] | None = None,
              samples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Bootstrap intervals over users (questions of one user are not independent, so users are what
    is resampled, with replacement) for the accuracy per sub-task, per dimension and overall. With
    ``reference`` (another run's predictions on the same questions), also the paired difference
    ``accuracy - reference accuracy`` on the same resamples, with its interval.

    Returns ``{cell: {"accuracy", "low", "high"[, "difference", "difference_low", "difference_high"]}}``
    with cells ``overall``, each dimension and each sub-task."""
    questions = list(questions)
    if not questions:
        raise ValueError("no questions to score")
    cells = ["overall", *dict.fromkeys(q["dimension"] for q in questions),
             *sorted({q["subtask"] for q in questions}, key=list(SUBTASKS).index)]
    correct, total = _user_tallies(questions, predictions, cells)
    users = correct.shape[0]
    weights = np.random.default_rng(seed).multinomial(users, np.full(users, 1 / users), size=samples)
    tail = 100 * (1 - level) / 2

    def resampled(right):
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ right) / (weights @ total)  # [samples, cells]; nan where a cell drew no question

    ours = resampled(correct)
    reference_correct = _user_tallies(questions, reference, cells)[0] if reference is not None else None
    theirs = resampled(reference_correct) if reference is not None else None
    result = {}
    for j, cell in enumerate(cells):
        low, high = np.nanpercentile(ours[:, j], [tail, 100 - tail])
        entry = {"accuracy": round(correct[:, j].sum() / total[:, j].sum(), 4),
                 "low": round(float(low), 4), "high": round(float(high), 4)}
        if theirs is not None:
            base = reference_correct[:, j].sum() / total[:, j].sum()
            low, high = np.nanpercentile(ours[:, j] - theirs[:, j], [tail, 100 - tail])
            entry.update(difference=round(entry["accuracy"] - float(base), 4) + 0.0,  # no "-0.0"
                         difference_low=round(float(low), 4) + 0.0, difference_high=round(float(high), 4) + 0.0)
        result[cell] = entry
    return result
