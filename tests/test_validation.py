import datetime as dt

import pytest

from journeys.model import to_datetime
from journeys.validation import parse_timestamp, validate_event, validate_item

MOMENT = dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    "value",
    [
        MOMENT,
        MOMENT.replace(tzinfo=None),  # no zone: taken as UTC
        MOMENT.astimezone(dt.timezone(dt.timedelta(hours=2))),
        int(MOMENT.timestamp()),  # epoch seconds
        int(MOMENT.timestamp()) * 1000,  # epoch milliseconds
        str(int(MOMENT.timestamp())),
        "2024-03-01T12:30:00Z",
        "2024-03-01T14:30:00+02:00",
        "2024-03-01 12:30:00",
    ],
)
def test_timestamps_in_every_accepted_form_normalise_to_the_same_utc_moment(value):
    assert to_datetime(parse_timestamp(value)) == MOMENT


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"user_id": None, "item_id": "i", "timestamp": 1_700_000_000}, "missing_user_id"),
        ({"user_id": "  ", "item_id": "i", "timestamp": 1_700_000_000}, "missing_user_id"),
        ({"user_id": "u", "item_id": None, "timestamp": 1_700_000_000}, "missing_item_id"),
        ({"user_id": "u", "item_id": "i", "timestamp": None}, "missing_timestamp"),
        ({"user_id": "u", "item_id": "i", "timestamp": "last tuesday"}, "bad_timestamp"),
        ({"user_id": "u", "item_id": "i", "timestamp": float("inf")}, "bad_timestamp"),
        ({"user_id": "u", "item_id": "i", "timestamp": True}, "bad_timestamp"),
        ({"user_id": ["u"], "item_id": "i", "timestamp": 1_700_000_000}, "bad_user_id"),
        ({"user_id": 1.5, "item_id": "i", "timestamp": 1_700_000_000}, "bad_user_id"),
        ({"user_id": "u", "item_id": "i", "timestamp": 1_700_000_000, "weight": "heavy"}, "bad_weight"),
        ({"user_id": "u", "item_id": "i", "timestamp": 1_700_000_000, "weight": -1}, "bad_weight"),
    ],
)
def test_bad_event_rows_are_dead_lettered_with_a_reason_and_the_row(row, reason):
    event, dead = validate_event(row)
    assert event is None
    assert dead.reason == reason
    assert dead.source == "events"
    assert dead.row == row
    assert dead.detail


def test_integer_ids_become_strings_and_weight_defaults_to_one():
    event, dead = validate_event({"user_id": 7, "item_id": 42.0, "timestamp": 1_700_000_000})
    assert dead is None
    assert (event.user_id, event.item_id, event.weight) == ("7", "42", 1.0)


@pytest.mark.parametrize(
    "tags, expected",
    [
        (["a", "b", "a", " "], ("a", "b")),
        ("a|b|c", ("a", "b", "c")),
        ('["x", "y"]', ("x", "y")),
        (None, ()),
    ],
)
def test_item_tags_are_read_from_lists_and_csv_text(tags, expected):
    item, dead = validate_item({"item_id": "i", "title": "t", "tags": tags})
    assert dead is None and item.tags == expected


def test_items_need_a_title_and_keep_unicode_titles_intact():
    _, dead = validate_item({"item_id": "i", "title": ""})
    assert dead.reason == "missing_title"
    item, dead = validate_item({"item_id": "i", "title": "🍞 天然酵母パンの作り方 — ржаной хлеб"})
    assert dead is None and item.title == "🍞 天然酵母パンの作り方 — ржаной хлеб"
