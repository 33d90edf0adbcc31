"""Journey identity across runs: one-to-one matching, merges, splits, new and ended journeys."""

import numpy as np
import pytest

from journeys.lineage import MatchConfig, assign_identity
from journeys.model import journey_id

CONFIG = MatchConfig(min_overlap=0.5, min_similarity=0.5)
X, Y, Z = np.eye(3).tolist()  # three unrelated directions


def _journey(user, items, centroid, first_ts=0, version=1, jid=None):
    return {"journey_id": jid or journey_id(user, items), "user_id": user, "item_ids": items, "centroid": centroid,
            "first_ts": first_ts, "first_seen": first_ts, "version": version}


def _relations(lineage):
    return sorted(((r["old_id"], r["new_id"], r["relation"]) for r in lineage), key=str)


def test_a_grown_journey_keeps_its_id_and_first_seen_and_its_version_goes_up():
    old = _journey("u", ["a", "b", "c"], X, first_ts=100, version=3)
    grown = _journey("u", ["a", "b", "c", "d", "e"], X, first_ts=150)
    same = _journey("u", ["a", "b", "c"], X, first_ts=100)
    (record,), lineage = assign_identity("u", [old], [grown], CONFIG, run_time=999)
    assert record["journey_id"] == old["journey_id"] != grown["journey_id"]
    assert record["first_seen"] == 100 and record["version"] == 4
    assert lineage == [{"user_id": "u", "old_id": old["journey_id"], "new_id": old["journey_id"],
                        "relation": "continued", "run_time": 999}]
    # Nothing changed: the same version.
    (record,), _ = assign_identity("u", [old], [same], CONFIG, run_time=999)
    assert record["version"] == 3


def test_new_and_ended_journeys():
    old = _journey("u", ["a", "b", "c"], X)
    other = _journey("u", ["x", "y", "z"], Y)
    (record,), lineage = assign_identity("u", [old], [other], CONFIG, run_time=1)
    assert record["journey_id"] == other["journey_id"] and record["version"] == 1 and record["first_seen"] == 0
    assert _relations(lineage) == sorted([(None, other["journey_id"], "new"), (old["journey_id"], None, "ended")],
                                         key=str)


def test_item_overlap_alone_is_not_enough_when_the_centroids_disagree():
    old = _journey("u", ["a", "b", "c"], X)
    drifted = _journey("u", ["a", "b", "c", "d"], Z)
    (record,), lineage = assign_identity("u", [old], [drifted], CONFIG, run_time=1)
    assert record["journey_id"] != old["journey_id"]
    assert {r["relation"] for r in lineage} == {"new", "ended"}


def test_two_journeys_that_merged_keep_the_id_of_the_most_alike_and_record_the_merge():
    big = _journey("u", ["a", "b", "c", "d", "e"], X)
    small = _journey("u", ["f", "g"], X)
    merged = _journey("u", ["a", "b", "c", "d", "e", "f", "g"], X)
    (record,), lineage = assign_identity("u", [small, big], [merged], CONFIG, run_time=1)
    assert record["journey_id"] == big["journey_id"]
    assert _relations(lineage) == sorted([(big["journey_id"], big["journey_id"], "continued"),
                                          (small["journey_id"], big["journey_id"], "merged")], key=str)


def test_a_journey_that_split_continues_as_the_larger_part_and_the_other_part_is_recorded():
    whole = _journey("u", list("abcdefg"), X)
    large, part = _journey("u", list("abcde"), X, first_ts=5), _journey("u", ["f", "g"], X, first_ts=1)
    records, lineage = assign_identity("u", [whole], [part, large], CONFIG, run_time=1)
    by_items = {tuple(r["item_ids"]): r for r in records}
    assert by_items[tuple("abcde")]["journey_id"] == whole["journey_id"]
    split_id = by_items[("f", "g")]["journey_id"]
    assert split_id != whole["journey_id"] and by_items[("f", "g")]["version"] == 1
    assert _relations(lineage) == sorted([(whole["journey_id"], whole["journey_id"], "continued"),
                                          (whole["journey_id"], split_id, "split")], key=str)


def test_a_split_off_journey_with_exactly_the_old_items_gets_an_id_of_its_own():
    old = _journey("u", ["a", "b", "c"], X)
    exact = _journey("u", ["a", "b", "c"], Y)  # same items, centroid too far: not a candidate
    near = _journey("u", ["a", "b", "c", "d"], X)
    records, _ = assign_identity("u", [old], [exact, near], CONFIG, run_time=1)
    ids = [r["journey_id"] for r in records]
    assert len(set(ids)) == 2 and old["journey_id"] in ids


def test_matching_is_one_to_one_and_every_journey_has_one_lineage_row():
    rng = np.random.default_rng(0)
    items = [f"i{n}" for n in range(30)]
    previous = [_journey("u", sorted(rng.choice(items, 6, replace=False).tolist()), X) for _ in range(5)]
    current = [_journey("u", sorted(rng.choice(items, 8, replace=False).tolist()), X, first_ts=n)
               for n in range(6)]
    records, lineage = assign_identity("u", previous, current, MatchConfig(0.3, 0.5), run_time=1)
    kept = [r["journey_id"] for r in records if r["journey_id"] in {p["journey_id"] for p in previous}]
    assert len(kept) == len(set(kept))
    assert len({r["journey_id"] for r in records}) == len(records)
    for record in records:
        assert sum(r["new_id"] == record["journey_id"] and r["relation"] in ("continued", "split", "new")
                   for r in lineage) == 1
    for old in previous:
        assert sum(r["old_id"] == old["journey_id"] and r["relation"] in ("continued", "merged", "ended")
                   for r in lineage) == 1


def test_the_result_does_not_depend_on_input_order():
    previous = [_journey("u", ["a", "b"], X), _journey("u", ["c", "d"], X), _journey("u", ["e", "f"], Y)]
    current = [_journey("u", ["a", "b", "c", "d"], X), _journey("u", ["e", "f", "g"], Y, first_ts=3)]
    first = assign_identity("u", previous, current, CONFIG, run_time=1)
    again = assign_identity("u", previous[::-1], current[::-1], CONFIG, run_time=1)
    assert first == again
    # A tie (both previous journeys are equally alike) is broken by the previous id.
    (merged, _), lineage = first
    assert merged["journey_id"] == min(previous[0]["journey_id"], previous[1]["journey_id"])


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="min_overlap"):
        MatchConfig(min_overlap=0)
    with pytest.raises(ValueError, match="embedding model"):
        assign_identity("u", [_journey("u", ["a"], [1.0, 0.0])], [_journey("u", ["a"], X)], CONFIG, 1)


def test_a_continuing_journey_keeps_its_name_unless_it_changed_enough():
    from journeys.lineage import CarryConfig, carry_or_rename, needs_naming

    config = CarryConfig(max_new_share=0.5, min_grounding=0.3)
    journey = {"item_ids": ["a", "b", "c", "d"], "version": 2}
    named = {"item_ids": ["a", "b", "c"], "naming_strategy": "keywords"}
    assert needs_naming(journey, named, "keywords", config) == (False, "continuing", "new items 0.25 <= 0.50")
    assert carry_or_rename(0.42, "new items 0.25 <= 0.50", config) == (
        True, "continuing", "new items 0.25 <= 0.50, grounding 0.42 >= 0.30")
    assert carry_or_rename(0.1, "x", config) == (False, "changed", "previous name's grounding 0.10 < 0.30")
    grown = {"item_ids": ["a", "x", "y", "z"], "version": 2}
    assert needs_naming(grown, named, "keywords", config) == (True, "changed", "new items 0.75 > 0.50")
    assert needs_naming(journey, named, "few-shot", config)[2] == "namer changed (keywords -> few-shot)"
    assert needs_naming({"item_ids": ["a"], "version": 1}, None, "keywords", config) == (True, "new", "new journey")
    assert needs_naming(journey, None, "keywords", config) == (True, "changed", "no previous name")
    assert needs_naming(journey, None, "keywords", config, previous_run=False) == (True, "new", "no previous run")
    with pytest.raises(ValueError, match="max_new_share"):
        CarryConfig(max_new_share=1.5)
