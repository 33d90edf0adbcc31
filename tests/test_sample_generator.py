from collections import Counter

from journeys.sample.generator import SampleConfig, generate, load_topics


def test_topic_catalogue_is_broad_and_named_like_interests():
    spec = load_topics()
    topics = spec["topics"]
    assert len(topics) >= 150
    assert len({t["domain"] for t in topics}) >= 6
    assert len({t["name"] for t in topics}) == len(topics)
    assert all(2 <= len(t["name"].split()) <= 6 for t in topics)
    for domain in spec["domains"].values():
        assert all(template.count("{p}") == 1 for template in domain["title_templates"])


def test_same_seed_same_data_other_seed_other_data():
    a = generate(SampleConfig(users=8, seed=1))
    b = generate(SampleConfig(users=8, seed=1))
    c = generate(SampleConfig(users=8, seed=2))
    assert a.events.equals(b.events) and a.items.equals(b.items) and a.truth.equals(b.truth)
    assert not a.events.equals(c.events)


def test_users_have_one_to_five_journeys_transients_and_noise_with_a_topic_split():
    config = SampleConfig(users=60, seed=0)
    truth = generate(config).truth.to_pylist()
    planted = {(r["user_id"], r["planted_id"]): r for r in truth if r["kind"] == "persistent"}
    per_user = Counter(user for user, _ in planted)
    assert set(per_user.values()) <= set(range(1, 6)) and len(per_user) == 60
    kinds = Counter(r["kind"] for r in truth)
    assert kinds["transient"] > 0 and 0.05 < kinds["noise"] / len(truth) < 0.15
    splits = {r["topic_id"]: r["split"] for r in truth if r["topic_id"]}
    assert set(splits.values()) == {"train", "test"}
    # A topic is in one split only, and every planted interest has a reference name.
    assert all(r["reference_name"] for r in truth if r["kind"] != "noise")


def test_persistent_journeys_span_weeks_and_transients_a_day():
    truth = generate(SampleConfig(users=30, seed=0)).truth.to_pylist()
    spans: dict[tuple, list] = {}
    for r in truth:
        if r["planted_id"]:
            spans.setdefault((r["kind"], r["planted_id"]), []).append(r["timestamp"])
    for (kind, _), times in spans.items():
        days = (max(times) - min(times)).days
        assert days >= 21 if kind == "persistent" else days < 1


def test_impossible_knobs_are_refused_not_looped_on():
    import pytest

    with pytest.raises(ValueError, match="number of topics"):
        generate(SampleConfig(users=1, max_journeys=500))


def test_knobs_change_the_data():
    few = generate(SampleConfig(users=30, seed=0, max_journeys=1, noise_share=0.0)).truth.to_pylist()
    assert not [r for r in few if r["kind"] == "noise"]
    assert len({r["planted_id"] for r in few if r["kind"] == "persistent"}) == 30


def test_single_domain_mode_keeps_every_interest_in_that_domain():
    spec = load_topics()
    film = {t["id"] for t in spec["topics"] if t["domain"] == "film_tv"}
    data = generate(SampleConfig(users=20, seed=0, domain="film_tv"))
    topics = {r["topic_id"] for r in data.truth.to_pylist() if r["topic_id"]}
    assert topics <= film and len(topics) >= 10
    assert set(data.items["category"].to_pylist()) == {spec["domains"]["film_tv"]["label"]}


def test_unknown_domain_is_refused_with_the_choices():
    import pytest

    with pytest.raises(ValueError, match="film_tv"):
        generate(SampleConfig(users=2, domain="cinema"))


def test_bursty_mode_logs_each_history_in_one_to_three_sessions():
    from journeys.model import day_of

    data = generate(SampleConfig(users=30, seed=0, timestamps="bursty"))
    days: dict[str, set[int]] = {}
    for user, ts in zip(data.events["user_id"].to_pylist(), data.events["timestamp"].cast("int64").to_pylist()):
        days.setdefault(user, set()).add(day_of(ts))
    assert len(days) == 30 and max(len(d) for d in days.values()) <= 3
    # The planted interests are still there: the same kinds of events as a spread-out sample.
    assert Counter(data.truth["kind"].to_pylist()).keys() == {"persistent", "transient", "noise"}
