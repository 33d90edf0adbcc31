"""UQABench's scoring rule and the accuracy table."""

import pytest

from journeys.uqa_scoring import accuracy, score


def test_a_prediction_is_right_when_it_starts_with_the_gold_letter_and_nothing_is_normalised():
    assert score("B", "B") and score("B. knitting", "B") and score("Bread", "B")
    for wrong in ("b", " B", "A", "", "(B)", None):
        assert not score(wrong, "B"), wrong
    with pytest.raises(ValueError):
        score("A", "")


def _question(qid, subtask, dimension, answer):
    return {"question_id": qid, "subtask": subtask, "dimension": dimension, "answer": answer}


def test_accuracy_per_subtask_dimension_and_overall_counts_missing_answers_as_wrong():
    questions = [
        _question("u1/next_item", "next_item", "action_prediction", "A"),
        _question("u2/next_item", "next_item", "action_prediction", "B"),
        _question("u1/next_attribute", "next_attribute", "action_prediction", "C"),
        _question("u1/direct_feature", "direct_feature", "sequence_understanding", "D"),
    ]
    predictions = {"u1/next_item": "A", "u2/next_item": "A", "u1/direct_feature": "D) the title"}
    result = accuracy(questions, predictions)
    assert result["overall"] == {"correct": 2, "total": 4, "missing": 1, "accuracy": 0.5}
    assert list(result["subtasks"]) == ["direct_feature", "next_item", "next_attribute"]  # the sub-task order
    assert result["subtasks"]["next_item"] == {"correct": 1, "total": 2, "missing": 0, "accuracy": 0.5}
    assert result["subtasks"]["next_attribute"]["missing"] == 1
    assert result["dimensions"] == {
        "sequence_understanding": {"correct": 1, "total": 1, "missing": 0, "accuracy": 1.0},
        "action_prediction": {"correct": 1, "total": 3, "missing": 1, "accuracy": 0.3333},
    }
    with pytest.raises(ValueError, match="not in the set"):
        accuracy(questions, {"u9/next_item": "A"})
