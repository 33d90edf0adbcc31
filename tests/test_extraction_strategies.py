import numpy as np
import pytest

from journeys.extraction import NOISE, make_extractor
from journeys.extraction.icpc import ICPCConfig, ICPCExtractor


def _blobs(centres: list[int], per: int, dim: int = 32, spread: float = 0.15, seed: int = 0) -> np.ndarray:
    """Unit vectors scattered around orthogonal axes ``centres``, interleaved in time."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(per):
        for axis in centres:
            vector = np.zeros(dim)
            vector[axis] = 1.0
            vector += rng.normal(0, spread, dim)
            rows.append(vector / np.linalg.norm(vector))
    return np.asarray(rows, dtype=np.float32)


def test_icpc_lets_items_join_journey_zero():
    # The published pitfall: `if best_index and ...` never joins journey 0. Items alternate between
    # two topics, so every second item must rejoin journey 0.
    labels = ICPCExtractor(ICPCConfig(refine=False)).cluster(_blobs([0, 1], per=5))
    assert labels.tolist() == [0, 1] * 5


@pytest.mark.parametrize("strategy", ["icpc", "hdbscan"])
def test_strategies_recover_separate_topics_and_are_deterministic(strategy):
    vectors = _blobs([0, 1, 2], per=8)
    labels = make_extractor(strategy).cluster(vectors)
    assert len(set(labels[labels != NOISE])) == 3
    for axis in range(3):  # every topic's items share one label
        assert len(set(labels[axis::3])) == 1
    assert np.array_equal(labels, make_extractor(strategy).cluster(vectors))


def test_icpc_threshold_sets_granularity():
    vectors = _blobs([0, 1], per=6, spread=0.05)
    mixed = (vectors[0::2] + vectors[1::2]) / np.sqrt(2)  # every item sits between both axes
    coarse = ICPCExtractor(ICPCConfig(threshold=0.3, merge_threshold=0.2)).cluster(np.vstack([vectors, mixed]))
    fine = ICPCExtractor(ICPCConfig(threshold=0.9, merge_threshold=0.8, centroid_merge_threshold=1.0)).cluster(
        np.vstack([vectors, mixed]))
    assert len(set(coarse[coarse != NOISE])) < len(set(fine[fine != NOISE]))


def test_icpc_small_journeys_merge_or_become_noise():
    vectors = _blobs([0, 1], per=6)
    lone = np.zeros((1, 32), dtype=np.float32)
    lone[0, 5] = 1.0  # one item unlike anything else
    labels = ICPCExtractor(ICPCConfig(min_size=3)).cluster(np.vstack([vectors, lone]))
    assert labels[-1] == NOISE
    assert len(set(labels[:-1])) == 2


def test_too_few_items_are_noise_not_an_error():
    for strategy in ("icpc", "hdbscan"):
        assert make_extractor(strategy).cluster(_blobs([0], per=1)).tolist() == [NOISE]
        assert make_extractor(strategy).cluster(np.zeros((0, 32), dtype=np.float32)).tolist() == []


def test_hdbscan_heavy_user_is_fitted_on_a_subset_and_the_rest_predicted():
    vectors = _blobs([0, 1], per=30)
    extractor = make_extractor("hdbscan", max_fit_items=20)
    labels = extractor.cluster(vectors, visits=np.arange(len(vectors), dtype=float))
    assert len(set(labels[labels != NOISE])) == 2
    assert (labels != NOISE).mean() > 0.8


def test_bad_parameters_are_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="unknown strategy 'kmeans'"):
        make_extractor("kmeans")
    with pytest.raises(ValueError, match="no parameter"):
        make_extractor("icpc", min_cluster_size=3)
    with pytest.raises(ValueError, match="merge_threshold"):
        make_extractor("icpc", threshold=0.3, merge_threshold=0.5)
