"""Catalogue centring (exact, order-free mean) and the time / count / auto persistence rules."""

import numpy as np
import pytest

from journeys.centring import centre, mean_from_fixed, to_fixed
from journeys.persistence import PersistenceConfig


def test_the_fixed_point_mean_does_not_depend_on_the_order_of_the_items():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    forward = sum((to_fixed(v) for v in vectors), np.zeros(16, dtype=np.int64))
    shuffled = sum((to_fixed(v) for v in vectors[rng.permutation(500)]), np.zeros(16, dtype=np.int64))
    assert mean_from_fixed(forward, 500).tobytes() == mean_from_fixed(shuffled, 500).tobytes()
    assert np.allclose(mean_from_fixed(forward, 500), vectors.mean(axis=0), atol=1e-6)


def test_centring_removes_a_shared_component_and_keeps_unit_length():
    rng = np.random.default_rng(1)
    common = rng.normal(size=32)
    vectors = 3 * common + rng.normal(size=(200, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    raw_cosine = float(np.mean(vectors[:100] @ vectors[100:].T))
    centred = centre(vectors, vectors.mean(axis=0))
    assert raw_cosine > 0.8
    assert abs(float(np.mean(centred[:100] @ centred[100:].T))) < 0.05
    assert np.allclose(np.linalg.norm(centred, axis=1), 1, atol=1e-5)
    assert centre(vectors, None) is vectors


def test_auto_uses_time_only_where_the_history_can_show_it():
    config = PersistenceConfig()  # 4 items, 7 days span, 4 active days, auto
    assert config.rule_for(history_span_days=90, history_active_days=20) == "time"
    assert config.rule_for(history_span_days=0.2, history_active_days=1) == "count"
    assert config.rule_for(history_span_days=400, history_active_days=2) == "count"
    assert PersistenceConfig(rule="time").rule_for(0, 1) == "time"
    assert PersistenceConfig(rule="count").rule_for(90, 20) == "count"


def test_the_count_rule_ignores_time_but_not_size():
    config = PersistenceConfig()
    assert config.failure(10, 0.1, 1, "time") == "span 0.1 days < 7; 1 active days < 4"
    assert config.failure(10, 0.1, 1, "count") is None
    # Without time a burst looks like a small journey: the count rule asks for one item more.
    assert config.failure(4, 0.1, 1, "count") == "4 items < 5"
    assert config.failure(4, 30, 10, "time") is None
    assert config.score(20, 0.1, 1, "count") == 1.0
    assert config.score(16, 0.1, 1, "time") < 0.2


def test_an_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="auto, time, count"):
        PersistenceConfig(rule="sometimes")
