"""The in-memory records that flow between stages. Small NamedTuples: cheap to pickle in Beam."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import NamedTuple

_UTC = dt.timezone.utc

MICROS_PER_DAY = 86_400 * 1_000_000


class Event(NamedTuple):
    user_id: str
    item_id: str
    ts: int  # microseconds since the epoch, UTC
    weight: float = 1.0
    event_type: str | None = None


class Item(NamedTuple):
    item_id: str
    title: str
    tags: tuple[str, ...] = ()
    category: str | None = None
    text: str | None = None
    embedding: tuple[float, ...] | None = None  # the team's own vector for the item, if given

    def context_text(self, max_chars: int = 512) -> str | None:
        """Tags and description, embedded apart from the title (see ``embed_items``). The broad
        category only stands in when there are no tags: shared by thousands of items, it would
        otherwise pull unrelated items of one domain together."""
        parts = [", ".join(self.tags)] if self.tags else ([self.category] if self.category else [])
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)[:max_chars] or None

    def content_key(self) -> str:
        """Identifies the item *and* what was embedded, so an edited title gets a fresh vector."""
        payload = f"{self.item_id}\x00{self.title}\x00{self.context_text() or ''}"
        return hashlib.sha1(payload.encode()).hexdigest()


def to_datetime(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=_UTC) + dt.timedelta(microseconds=micros)


def day_of(micros: int) -> int:
    """UTC calendar day number, used to count distinct active days."""
    return micros // MICROS_PER_DAY


def journey_id(user_id: str, item_ids: list[str]) -> str:
    """Stable across reruns and runners: depends only on the user and the member items."""
    payload = "\x1f".join([user_id, *sorted(item_ids)])
    return "j-" + hashlib.sha1(payload.encode()).hexdigest()[:16]
