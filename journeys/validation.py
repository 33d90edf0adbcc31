"""Turn raw input rows into clean events and items, or into dead letters that say why.

Validation is per row so that one bad value costs one row, never a file or a run. Each function
returns ``(clean, None)`` or ``(None, DeadLetter)``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from journeys.model import Event, Item

_UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
# Epoch numbers are told apart by magnitude: 1e11 seconds is the year 5138, 1e11 ms is 1973.
_MS_FROM, _US_FROM, _NS_FROM = 1e11, 1e14, 1e17


@dataclass(frozen=True)
class TimeWindow:
    """The times an event may plausibly have; others are dead-lettered as ``implausible_timestamp``.

    The default is fixed (not "now"), so that the same input gives the same output on any day: it
    starts before any web-scale activity log (1995) and ends at 2100. With it, every way of reading
    an epoch number lands apart: seconds are 7.9e8 to 4.1e9, milliseconds 7.9e11 to 4.1e12,
    microseconds and nanoseconds 1e3 and 1e6 times that; a number between these bands (e.g. 1e11,
    which as milliseconds is 1973) is out of the window whatever unit it was meant in."""

    start_us: int
    end_us: int

    @classmethod
    def between(cls, start: str, end: str) -> TimeWindow:
        """From two ISO-8601 times or dates (UTC when no zone is given)."""
        try:
            first, last = parse_timestamp(start), parse_timestamp(end)
        except _Reject as reject:
            raise ValueError(f"timestamp window: {reject.detail}") from None
        if first >= last:
            raise ValueError(f"timestamp window: {start} is not before {end}")
        return cls(first, last)

    def describe(self) -> str:
        return f"{_iso(self.start_us)} to {_iso(self.end_us)}"


def _iso(micros: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")


DEFAULT_WINDOW_START, DEFAULT_WINDOW_END = "1995-01-01", "2100-01-01"


@dataclass(frozen=True)
class DeadLetter:
    source: str  # events | items
    reason: str  # a short, stable code to count by
    detail: str
    row: dict | None = None
    user_id: str | None = None
    item_id: str | None = None

    def to_record(self) -> dict:
        return {
            "source": self.source,
            "reason": self.reason,
            "detail": self.detail,
            "user_id": self.user_id,
            "item_id": self.item_id,
            "row": None if self.row is None else json.dumps(self.row, default=str, ensure_ascii=False),
        }


class _Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _identifier(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _Reject(f"missing_{column}", f"{column} is empty")
    if isinstance(value, bool):
        raise _Reject(f"bad_{column}", f"{column} must be a string or an integer, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        raise _Reject(f"bad_{column}", f"{column} must be a string or an integer, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise _Reject(f"missing_{column}", f"{column} is empty")
        return value
    raise _Reject(f"bad_{column}", f"{column} must be a string or an integer, got {type(value).__name__}")


def parse_timestamp(value: Any) -> int:
    """Microseconds since the epoch, UTC, from a datetime, epoch s/ms/us/ns, or ISO-8601 text.

    A datetime without a zone is taken as UTC.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _Reject("missing_timestamp", "timestamp is empty")
    if isinstance(value, bool):
        raise _Reject("bad_timestamp", f"timestamp must be a time, got {value!r}")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=_UTC)
        return (moment - _EPOCH) // dt.timedelta(microseconds=1)
    if isinstance(value, dt.date):
        return parse_timestamp(dt.datetime(value.year, value.month, value.day))
    if isinstance(value, (int, float)):
        return _from_epoch(float(value), value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise _Reject("missing_timestamp", "timestamp is empty")
        try:
            return _from_epoch(float(text), value)
        except ValueError:
            pass
        try:
            return parse_timestamp(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            raise _Reject("bad_timestamp", f"cannot read {text!r} as a time: use ISO-8601 or epoch "
                          "seconds or milliseconds") from None
    raise _Reject("bad_timestamp", f"timestamp must be a time, got {type(value).__name__}")


def _from_epoch(number: float, original: Any) -> int:
    if not math.isfinite(number):
        raise _Reject("bad_timestamp", f"timestamp {original!r} is not a finite number")
    magnitude = abs(number)
    if magnitude >= _NS_FROM:
        micros = number / 1000
    elif magnitude >= _US_FROM:
        micros = number
    elif magnitude >= _MS_FROM:
        micros = number * 1000
    else:
        micros = number * 1_000_000
    # datetime's range, so that every accepted time can be written and read back
    if not -62_135_596_800_000_000 <= micros <= 253_402_300_799_000_000:
        raise _Reject("bad_timestamp", f"timestamp {original!r} is out of range")
    return int(round(micros))


def _weight(row: dict) -> float:
    value = row.get("weight")
    if value is None or (isinstance(value, str) and not value.strip()):
        return 1.0
    if isinstance(value, bool):
        raise _Reject("bad_weight", f"weight must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Reject("bad_weight", f"weight must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise _Reject("bad_weight", f"weight must be a finite number >= 0, got {value!r}")
    return number


def _optional_text(row: dict, column: str) -> str | None:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (dict, list)):
        raise _Reject(f"bad_{column}", f"{column} must be text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _tags(row: dict) -> tuple[str, ...]:
    value = row.get("tags")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):  # a JSON list written into a CSV cell
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise _Reject("bad_tags", f"tags look like JSON but do not parse: {text[:200]!r}") from None
        else:
            separator = "|" if "|" in text else ","
            value = text.split(separator)
    if not isinstance(value, (list, tuple)):
        raise _Reject("bad_tags", f"tags must be a list of strings, got {type(value).__name__}")
    tags = []
    for tag in value:
        if tag is None:
            continue
        if isinstance(tag, (dict, list)):
            raise _Reject("bad_tags", "tags must be a list of strings")
        text = str(tag).strip()
        if text and text not in tags:
            tags.append(text)
    return tuple(tags)


def epoch_unit(number: float) -> str:
    """How an epoch number is read, by its magnitude (see ``TimeWindow``)."""
    magnitude = abs(number)
    return ("nanoseconds" if magnitude >= _NS_FROM else "microseconds" if magnitude >= _US_FROM
            else "milliseconds" if magnitude >= _MS_FROM else "seconds")


def _plausible(ts: int, value: Any, window: TimeWindow) -> int:
    if window.start_us <= ts < window.end_us:
        return ts
    how = ""
    try:
        how = f" (read as epoch {epoch_unit(float(value))})"
    except (TypeError, ValueError):
        pass
    raise _Reject("implausible_timestamp", f"timestamp {value!r} is {_iso(ts)}{how}, outside the plausible "
                  f"window {window.describe()} (--min_timestamp / --max_timestamp)")


DEFAULT_WINDOW = TimeWindow.between(DEFAULT_WINDOW_START, DEFAULT_WINDOW_END)


def validate_event(row: dict, window: TimeWindow = DEFAULT_WINDOW) -> tuple[Event | None, DeadLetter | None]:
    user_id = item_id = None
    try:
        user_id = _identifier(row, "user_id")
        item_id = _identifier(row, "item_id")
        event = Event(
            user_id=user_id,
            item_id=item_id,
            ts=_plausible(parse_timestamp(row.get("timestamp")), row.get("timestamp"), window),
            weight=_weight(row),
            event_type=_optional_text(row, "event_type"),
        )
        return event, None
    except _Reject as reject:
        return None, DeadLetter("events", reject.reason, reject.detail, row, user_id, item_id)


def _embedding(row: dict, required: bool) -> tuple[float, ...] | None:
    """The item's own vector, if the row has one: a list of finite numbers (a JSON list in a CSV
    cell). Lengths are checked per file before any work (``journeys.inputs.check_vectors``)."""
    value = row.get("embedding")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if required:
            raise _Reject("missing_vector", "the item has no vector and the representation uses the embedding "
                          "block (--representation); give it one, or choose the blocks without embedding")
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _Reject("bad_vector", f"embedding is not a JSON list of numbers: {value[:200]!r}") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise _Reject("bad_vector", f"embedding must be a non-empty list of numbers, got {type(value).__name__}")
    try:
        vector = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise _Reject("bad_vector", "embedding holds something that is not a number") from None
    if not all(math.isfinite(x) for x in vector):
        raise _Reject("bad_vector", "embedding holds NaN or an infinite value")
    if not any(vector):
        raise _Reject("bad_vector", "embedding is all zeros: it has no direction to compare")
    return vector


def validate_item_vector(row: dict) -> tuple[tuple[str, tuple[float, ...]] | None, DeadLetter | None]:
    """A row of a separate item-vectors table -> (item_id, vector), or a dead letter."""
    item_id = None
    try:
        item_id = _identifier(row, "item_id")
        return (item_id, _embedding(row, required=True)), None
    except _Reject as reject:
        return None, DeadLetter("item_vectors", reject.reason, reject.detail, row, None, item_id)


def validate_item(row: dict, require_vector: bool = False) -> tuple[Item | None, DeadLetter | None]:
    """A catalogue row -> an Item, or a dead letter with the reason. With ``require_vector`` (the
    embedding block is in use), a row without a vector is rejected rather than clustered without one."""
    item_id = None
    try:
        item_id = _identifier(row, "item_id")
        title = _optional_text(row, "title")
        if title is None:
            raise _Reject("missing_title", "title is empty")
        item = Item(
            item_id=item_id,
            title=title,
            tags=_tags(row),
            category=_optional_text(row, "category"),
            text=_optional_text(row, "text"),
            embedding=_embedding(row, require_vector),
        )
        return item, None
    except _Reject as reject:
        return None, DeadLetter("items", reject.reason, reject.detail, row, None, item_id)
