"""UQABench scoring: a prediction is correct when the generated text starts with the gold letter.

As in UQABench, nothing is normalised: no stripping, no case folding. " B" and "b" are wrong for
"B". That keeps the rule identical across models and puts the burden of answering in the required
format on the model (and on the alignment step that teaches it), which is what the benchmark measures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
