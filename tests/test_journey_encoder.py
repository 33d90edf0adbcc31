"""The journey encoder: fixed width, deterministic, pools that mean what they say, clear refusals."""

import datetime as dt

import numpy as np
import pytest

from tuning.journey_encoder import SCALAR_FEATURES, JourneyEncoder, JourneyEncoderConfig
from tuning.user_encoders import create_user_encoder

DAY = dt.timedelta(days=1)
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _journey(jid, direction, events, first_day, last_day, persistence=0.8, model="m", dim=8):
    centroid = np.zeros(dim)
    centroid[direction] = 1.0
    return {"journey_id": jid, "centroid": centroid.tolist(), "num_events": events, "persistence": persistence,
            "first_ts": START + first_day * DAY, "last_ts": START + last_day * DAY, "embedding_model": model}


ENCODER = JourneyEncoder(JourneyEncoderConfig(centroid_dim=8, half_life_days=30))


def test_fixed_width_float32_and_the_same_bytes_in_any_journey_order():
    journeys = [_journey("a", 0, 40, 0, 150), _journey("b", 1, 10, 100, 120), _journey("c", 2, 6, 5, 20)]
    first = ENCODER.encode(journeys)
    assert first.dtype == np.float32 and first.shape == (ENCODER.width,) == (2 * 8 + len(SCALAR_FEATURES),)
    assert first.tobytes() == ENCODER.encode(journeys[::-1]).tobytes() == JourneyEncoder(
        JourneyEncoderConfig(centroid_dim=8, half_life_days=30)).encode(journeys).tobytes()
    assert np.all(np.isfinite(first)) and first[2 * 8] == 1.0  # has_journeys


def test_no_journeys_is_a_defined_embedding():
    empty = ENCODER.encode([])
    assert empty.shape == (ENCODER.width,) and not empty.any() and ENCODER.problems([]) == []


def test_long_term_pool_follows_size_and_the_recent_pool_follows_recency():
    # A big journey that ended a year ago and a small one active until now.
    old_big = _journey("old", 0, 200, 0, 100)
    new_small = _journey("new", 1, 8, 440, 465)
    vector = ENCODER.encode([old_big, new_small])
    long_term, recent = vector[:8], vector[8:16]
    assert long_term[0] > long_term[1]  # size wins over the whole history
    assert recent[1] > recent[0]  # recency wins in the recent pool
    assert abs(np.linalg.norm(long_term) - 1) < 1e-6 and abs(np.linalg.norm(recent) - 1) < 1e-6
    scalars = dict(zip(SCALAR_FEATURES, vector[16:]))
    assert scalars["largest_share"] == pytest.approx(200 / 208)
    assert 0 < scalars["recent_share"] < 0.5
    # A longer half-life forgets more slowly: the old journey keeps more of the recent pool.
    slow = JourneyEncoder(JourneyEncoderConfig(centroid_dim=8, half_life_days=3650)).encode([old_big, new_small])
    assert slow[8] > recent[0]
    assert JourneyEncoder(JourneyEncoderConfig(centroid_dim=8, half_life_days=3650)).version != ENCODER.version


def test_journeys_that_cannot_be_encoded_are_named_with_the_reason():
    good = _journey("a", 0, 10, 0, 30)
    assert ENCODER.problems([good]) == []
    cases = {
        "bad_centroid": {**good, "centroid": [0.1] * 5},
        "missing_field": {**good, "persistence": None},
        "bad_journey": {**good, "last_ts": START - DAY},
    }
    for reason, journey in cases.items():
        assert [r for r, _ in ENCODER.problems([journey])] == [reason], reason
    nan = {**good, "centroid": [float("nan")] * 8}
    assert ENCODER.problems([nan])[0][0] == "bad_centroid"
    assert "expected 8" in ENCODER.problems([cases["bad_centroid"]])[0][1]
    mixed = [good, _journey("b", 1, 5, 0, 20, model="other")]
    assert [r for r, _ in ENCODER.problems(mixed)] == ["mixed_embedding_models"]
    strict = JourneyEncoder(JourneyEncoderConfig(centroid_dim=8, embedding_model="wanted"))
    assert [r for r, _ in strict.problems([good])] == ["wrong_embedding_model"]


def test_encoders_are_chosen_by_name():
    assert isinstance(create_user_encoder("journey", centroid_dim=8, half_life_days=None), JourneyEncoder)
    with pytest.raises(ValueError, match="needs --sequence_model"):
        create_user_encoder("sasrec")
    with pytest.raises(ValueError, match="unknown encoder 'nope'"):
        create_user_encoder("nope")
    with pytest.raises(ValueError, match="half_life_days"):
        JourneyEncoderConfig(half_life_days=0)
