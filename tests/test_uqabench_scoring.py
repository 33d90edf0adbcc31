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


def _questions(users: int, per_user: int = 4):
    subtasks = [("interest_perception", "long_term_interests"), ("action_prediction", "next_item")]
    return [{"question_id": f"u{u}/{i}", "user_id": f"u{u}", "dimension": subtasks[i % 2][0],
             "subtask": subtasks[i % 2][1], "answer": "A"} for u in range(users) for i in range(per_user)]


def test_bootstrap_intervals_are_over_users_and_paired_differences_line_up():
    from journeys.uqa_scoring import intervals

    questions = _questions(40)
    half = {q["question_id"]: "A" if int(q["user_id"][1:]) % 2 else "B" for q in questions}  # half the users right
    wrong = {q["question_id"]: "B" for q in questions}
    result = intervals(questions, half, wrong, samples=500)
    assert set(result) == {"overall", "interest_perception", "action_prediction", "long_term_interests", "next_item"}
    cell = result["overall"]
    assert cell["accuracy"] == 0.5 and cell["low"] < 0.5 < cell["high"] and cell["high"] - cell["low"] > 0.15
    assert cell["difference"] == 0.5 and 0 < cell["difference_low"] < 0.5 < cell["difference_high"]
    assert intervals(questions, half, wrong, samples=500) == result  # seeded: the same intervals again
    same = intervals(questions, half, half, samples=200)["overall"]
    assert same["difference"] == same["difference_low"] == same["difference_high"] == 0  # paired: no noise


def test_bootstrap_treats_a_users_questions_as_one_draw():
    from journeys.uqa_scoring import intervals

    # the same 50% accuracy: split within each user (narrow) or between users (wide)
    questions = _questions(20, per_user=8)
    within = {q["question_id"]: "A" if int(q["question_id"].split("/")[1]) < 4 else "B" for q in questions}
    between = {q["question_id"]: "A" if int(q["user_id"][1:]) < 10 else "B" for q in questions}
    narrow, wide = intervals(questions, within)["overall"], intervals(questions, between)["overall"]
    assert narrow["accuracy"] == wide["accuracy"] == 0.5
    assert narrow["high"] - narrow["low"] < 0.01 < wide["high"] - wide["low"]
