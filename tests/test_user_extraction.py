import dataclasses
import time

import numpy as np

from journeys.extraction import make_extractor
from journeys.model import MICROS_PER_DAY, Event, Item
from journeys.persistence import PersistenceConfig
from journeys.representation import document_terms
from journeys.user_extraction import ExtractionSettings, extract_user

DAY = MICROS_PER_DAY
SETTINGS = ExtractionSettings(make_extractor("icpc"), PersistenceConfig(), "icpc", "test-model")


def _catalogue(topics: dict[str, list[str]], dim: int = 16) -> dict:
    rng = np.random.default_rng(0)
    catalogue = {}
    for axis, (topic, titles) in enumerate(topics.items()):
        for number, title in enumerate(titles):
            vector = np.zeros(dim)
            vector[axis] = 1.0
            vector += rng.normal(0, 0.1, dim)
            item = Item(f"{topic}-{number}", title, tags=(topic,))
            catalogue[item.item_id] = (item, (vector / np.linalg.norm(vector)).astype(np.float32))
    return catalogue


CATALOGUE = _catalogue({
    "bread": ["Shaping a tight boule", "Levain build timing", "Scoring a sourdough loaf", "Rye starter feeding",
              "Open crumb ciabatta", "Banneton proofing"],
    "f1": ["Monaco qualifying analysis", "Tyre strategy at Silverstone", "Ferrari pit stop review",
           "DRS trains explained", "Red Bull floor upgrade", "Safety car restarts"],
})


def _run(events):
    items = [item for item, _ in CATALOGUE.values()]
    return extract_user("u1", events, CATALOGUE, SETTINGS, dict(document_terms(items)), len(items))


def _journey_events(topic: str, days: list[int]) -> list[Event]:
    return [Event("u1", f"{topic}-{n % 6}", day * DAY + n * 1_000_000) for n, day in enumerate(days)]


def test_a_persistent_interest_becomes_a_journey_and_a_burst_is_transient():
    # The user returns to items (8 events on 6 bread items), so time judges persistence.
    events = _journey_events("bread", [0, 3, 9, 15, 22, 30, 33, 36]) + _journey_events("f1", [40, 40, 40, 40, 41])
    result = _run(events)
    assert result.user["persistence_rule"] == "time"
    assert len(result.journeys) == 1 and len(result.transient) == 1
    journey = result.journeys[0]
    assert set(journey["item_ids"]) == {f"bread-{n}" for n in range(6)}
    assert journey["active_days"] == 8 and journey["span_days"] == 36.0
    assert journey["num_events"] == 8
    assert 0 < journey["persistence"] <= 1
    assert "span" in result.transient[0]["reason"] and "active days" in result.transient[0]["reason"]
    assert result.events_in_journeys + result.events_in_transient + result.noise_events == len(events)


def test_journey_ids_depend_on_user_and_items_only():
    events = _journey_events("bread", [0, 3, 9, 15, 22, 30])
    first = _run(events).journeys[0]
    again = _run(list(reversed(events))).journeys[0]
    assert first["journey_id"] == again["journey_id"]
    assert first == again


def test_salient_terms_and_representative_titles_describe_the_journey():
    journey = _run(_journey_events("bread", [0, 3, 9, 15, 22, 30]))
    record = journey.journeys[0]
    assert record["salient_terms"][0]["weight"] == 1.0
    bread_titles = {item.title for item, _ in CATALOGUE.values() if item.tags == ("bread",)}
    # every distinct item under the default cap, each title once
    assert sorted(record["representative_titles"]) == sorted(bread_titles)


def test_representative_titles_are_capped_most_central_first():
    events = _journey_events("bread", [0, 3, 9, 15, 22, 30])
    items = [item for item, _ in CATALOGUE.values()]
    capped = dataclasses.replace(SETTINGS, top_titles=2)
    record = extract_user("u1", events, CATALOGUE, capped, dict(document_terms(items)), len(items)).journeys[0]
    full = _run(events).journeys[0]
    assert record["representative_titles"] == full["representative_titles"][:2]


def test_duplicate_events_are_dead_lettered_once_each():
    events = _journey_events("bread", [0, 3, 9, 15, 22, 30])
    result = _run(events + events[:2])
    assert [d.reason for d in result.dead_letters] == ["duplicate_event", "duplicate_event"]
    assert result.journeys[0]["num_events"] == 6


def test_a_user_with_one_event_is_noise():
    result = _run([Event("u1", "bread-0", 0)])
    assert (result.journeys, result.transient, result.noise_events) == ([], [], 1)


def test_a_user_with_fifty_thousand_events_is_handled_quickly():
    rng = np.random.default_rng(1)
    item_ids = list(CATALOGUE)
    events = [Event("u1", item_ids[int(rng.integers(len(item_ids)))], int(t) * 60_000_000 + n)
              for n, t in enumerate(rng.integers(0, 200 * 24 * 60, 50_000))]
    started = time.perf_counter()
    result = _run(events)
    assert time.perf_counter() - started < 30  # a guard against quadratic blow-up, not a benchmark
    assert len(result.journeys) == 2
    assert result.events_in_journeys + result.events_in_transient + result.noise_events + len(
        result.dead_letters) == 50_000


def test_users_without_journeys_say_why():
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    close = [base + 0.05 * rng.normal(size=8) for _ in range(5)]
    catalogue = {f"i{n}": (Item(f"i{n}", f"title {n}"), (v / np.linalg.norm(v)).astype(np.float32))
                 for n, v in enumerate(close)}
    # Five similar items on one afternoon: a cluster, but not a journey under the time rule.
    events = [Event("u", f"i{n}", n * 60_000_000) for n in range(5)]
    settings = ExtractionSettings(make_extractor("icpc"), PersistenceConfig(rule="time"), "icpc", "m")
    result = extract_user("u", events, catalogue, settings, {}, 5)
    assert result.user["outcome"] == "only_transient" and result.user["persistence_rule"] == "time"
    # Each item once (a log of ratings or tags): auto judges by the log rule, where 3 items suffice.
    counted = ExtractionSettings(make_extractor("icpc"), PersistenceConfig(), "icpc", "m")
    result = extract_user("u", events, catalogue, counted, {}, 5)
    assert result.user["persistence_rule"] == "log" and result.user["outcome"] == "journeys"
    assert result.user["journeys"] == 1 and result.user["num_events"] == 5
    three = extract_user("u", events[:3], catalogue, counted, {}, 5)
    assert three.user["persistence_rule"] == "log" and three.user["journeys"] == 1
    lone = extract_user("u", events[:1], catalogue, counted, {}, 5)
    assert lone.user["outcome"] == "no_cluster" and lone.noise_events == 1


def test_a_burst_without_returns_is_transient_for_a_user_who_returns_to_items():
    """A bursty history (one afternoon) of a user who comes back to items: the count rule applies,
    and a cluster of five new items touched once each is a passing interest, not a journey."""
    rng = np.random.default_rng(1)
    axes = np.eye(8)
    vectors = [axes[0] + 0.05 * rng.normal(size=8) for _ in range(5)] + [axes[1] + 0.05 * rng.normal(size=8)
                                                                         for _ in range(5)]
    catalogue = {f"i{n}": (Item(f"i{n}", f"title {n}"), (v / np.linalg.norm(v)).astype(np.float32))
                 for n, v in enumerate(vectors)}
    returned = [Event("u", f"i{n % 5}", n * 60_000_000) for n in range(15)]  # i0-i4, each three times
    burst = [Event("u", f"i{5 + n}", (100 + n) * 60_000_000) for n in range(5)]
    settings = ExtractionSettings(make_extractor("icpc"), PersistenceConfig(), "icpc", "m")
    result = extract_user("u", returned + burst, catalogue, settings, {}, 10)
    assert result.user["persistence_rule"] == "count"
    assert [sorted(j["item_ids"]) for j in result.journeys] == [[f"i{n}" for n in range(5)]]
    assert [t["reason"] for t in result.transient] == ["0 returns < 1"]


def test_a_log_history_is_clustered_by_the_log_extractor():
    """Each item once: the log rule, and the clustering for logs (here one that keeps every item
    apart, so no journey can form) instead of the run's own."""
    items = [item for item, _ in CATALOGUE.values()]
    events = [Event("u1", f"bread-{n}", n * DAY) for n in range(6)]
    apart = make_extractor("icpc", threshold=1.0, merge_threshold=1.0, centroid_merge_threshold=1.0)
    settings = dataclasses.replace(SETTINGS, log_extractor=apart)
    logged = extract_user("u1", events, CATALOGUE, settings, dict(document_terms(items)), len(items))
    assert logged.user["persistence_rule"] == "log" and logged.user["outcome"] == "no_cluster"
    assert _run(events).user["journeys"] == 1  # the run's own clustering finds the bread journey


def test_the_centroid_stays_in_the_text_space_whatever_blocks_cluster():
    """Names, grounding, lineage, exemplars and the journey user encoder read the centroid as a text
    vector: with the tags block (or any other) deciding the clusters, it is still the unit mean of the
    members' text vectors."""
    from journeys.item_space import ItemSpace, TagSpace

    items = [item for item, _ in CATALOGUE.values()]
    space = ItemSpace(("text", "tags"), {"tags": 3.0}, None, TagSpace.fit(items))
    events = _journey_events("bread", [0, 3, 9, 15, 22, 30, 33, 36])
    journey = extract_user("u1", events, CATALOGUE, SETTINGS, dict(document_terms(items)), len(items),
                           space).journeys[0]
    mean = np.mean([CATALOGUE[i][1] for i in journey["item_ids"]], axis=0)
    np.testing.assert_allclose(journey["centroid"], mean / np.linalg.norm(mean), atol=1e-6)
    assert len(journey["centroid"]) == 16  # the text vectors' width, not the blocks'
