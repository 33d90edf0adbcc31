"""Scoring journeys against reference groups without planted truth (e.g. a user's own tags)."""

from eval.extraction import evaluate_groups, tag_groups


def test_tag_groups_fold_spelling_and_drop_items_outside_the_history():
    histories = {"u": {"a", "b", "c", "d"}}
    rows = [{"user_id": "u", "item_id": i, "tag": t} for i, t in
            (("a", "Sci-Fi"), ("b", "sci fi"), ("c", "SCI_FI"), ("z", "sci-fi"), ("a", "pixar"), ("b", "pixar"))]
    assert tag_groups(rows, histories) == {("u", "sci fi"): {"a", "b", "c"}}


def test_a_split_history_beats_both_baselines_only_when_it_finds_the_groups():
    histories = {"u": {f"m{n}" for n in range(120)}}
    item_tags = {f"m{n}": ["Drama"] for n in range(120)}
    groups = {("u", "nolan"): {"m0", "m1", "m2"}, ("u", "pixar"): {"m10", "m11", "m12", "m13"}}
    found = [("u", ["m0", "m1", "m2"]), ("u", ["m10", "m11", "m12"]), ("u", [f"m{n}" for n in range(20, 120)])]
    report = evaluate_groups(found, groups, histories, item_tags)
    assert report["extracted"]["group_recall"] == 1.0
    assert report["extracted"]["mean_best_jaccard"] == round((1 + 0.75) / 2, 4)
    share = report["extracted"]["largest_journey_share_users_100_plus_items"]
    assert share == {"users": 1, "median": round(100 / 120, 4), "p90": round(100 / 120, 4), "mean": round(100 / 120, 4)}
    for baseline in ("baseline_whole_history", "baseline_one_per_tag"):  # one Drama group = the whole history
        assert report[baseline]["group_recall"] == 0.0
        assert report[baseline]["largest_journey_share_users_100_plus_items"]["median"] == 1.0
    nothing = evaluate_groups([], groups, histories, item_tags)["extracted"]
    assert nothing["group_recall"] == 0.0 and nothing["users_without_journeys"] == 1
