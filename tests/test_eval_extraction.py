import pyarrow as pa

from eval.extraction import evaluate


def _truth(rows):
    names = ["user_id", "item_id", "planted_id", "kind"]
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


TRUTH = _truth([
    ("u", "a1", "u/0", "persistent"), ("u", "a2", "u/0", "persistent"), ("u", "a3", "u/0", "persistent"),
    ("u", "b1", "u/1", "persistent"), ("u", "b2", "u/1", "persistent"), ("u", "b3", "u/1", "persistent"),
    ("u", "t1", "u/2", "transient"), ("u", "t2", "u/2", "transient"),
    ("u", "n1", None, "noise"),
])


def test_perfect_extraction_scores_one():
    result = evaluate([("u", ["a1", "a2", "a3"]), ("u", ["b1", "b2", "b3"])], TRUTH)
    assert result["ari"] == 1.0 and result["nmi"] == 1.0
    assert result["journey_recall"] == 1.0 and result["journey_precision"] == 1.0
    assert result["transient_reported_as_journeys"] == 0


def test_merged_journeys_and_reported_transients_lower_the_scores():
    result = evaluate([("u", ["a1", "a2", "a3", "b1", "b2", "b3"]), ("u", ["t1", "t2"])], TRUTH)
    assert result["journey_recall"] == 1.0  # Jaccard 3/6 is exactly the 0.5 bar: still found
    result = evaluate([("u", ["a1", "a2", "a3", "b1", "b2", "b3", "n1"]), ("u", ["t1", "t2"])], TRUTH)
    assert result["journey_recall"] == 0.0 and result["journey_precision"] == 0.0
    assert result["transient_reported_as_journeys"] == 1
    assert result["ari"] < 1.0


def test_partial_match_at_the_jaccard_bar():
    result = evaluate([("u", ["a1", "a2"]), ("u", ["b1"])], TRUTH)  # 2/3 and 1/3
    assert result["journey_recall"] == 0.5 and result["journey_precision"] == 0.5
