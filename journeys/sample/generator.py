"""A deterministic generator of realistic activity histories with planted ground truth.

Every user pursues 1-5 persistent journeys (topics revisited over weeks to months), a few transient
one-off interests (a burst of clicks in a day or two), and random noise clicks. The truth table
records, per event, which planted interest produced it and that topic's reference name, and splits
topics into train and test sets so that naming models can be judged on topics they never saw.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pyarrow as pa

from journeys import schema
from journeys.model import MICROS_PER_DAY

_START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
_START_MICROS = int(_START.timestamp()) * 1_000_000


@dataclass(frozen=True)
class SampleConfig:
    users: int = field(default=200, metadata={"help": "number of users"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same data"})
    min_journeys: int = field(default=1, metadata={"help": "fewest persistent journeys per user"})
    max_journeys: int = field(default=5, metadata={"help": "most persistent journeys per user"})
    max_transient: int = field(default=2, metadata={"help": "most one-off interests per user"})
    noise_share: float = field(default=0.1, metadata={"help": "share of events that are random clicks"})
    overlap: float = field(
        default=0.15,
        metadata={"help": "chance that an item borrows a related topic's phrase, and that a "
                  "user's next journey is a related topic"},
    )
    span_days: int = field(default=180, metadata={"help": "length of the whole history in days"})
    items_per_topic: int = field(default=30, metadata={"help": "catalogue items per topic"})
    test_share: float = field(default=0.2, metadata={"help": "share of topics held out for testing"})
    domain: str = field(
        default="all",
        metadata={"help": "'all', or one domain (film_tv, music, food, games, learning, news_reading, "
                  "shopping, sport): every interest is then a sub-interest of that one domain, as in a "
                  "real single-domain catalogue"},
    )
    timestamps: str = field(
        default="spread",
        metadata={"help": "'spread' (events on the days they happened) or 'bursty' (each user's events "
                  "logged in 1-3 sessions, as MovieLens ratings are, so time cannot show persistence)"},
    )

    def __post_init__(self):
        if self.users < 1:
            raise ValueError("users must be at least 1")
        if not 1 <= self.min_journeys <= self.max_journeys:
            raise ValueError("need 1 <= min_journeys <= max_journeys")
        if not 0 <= self.noise_share < 1:
            raise ValueError("noise_share must be in [0, 1)")
        if not 0 <= self.overlap <= 1:
            raise ValueError("overlap must be in [0, 1]")
        if self.span_days < 30:
            raise ValueError("span_days must be at least 30 so that journeys can persist")
        if self.items_per_topic < 5:
            raise ValueError("items_per_topic must be at least 5")
        if not 0 < self.test_share < 1:
            raise ValueError("test_share must be in (0, 1)")
        if self.timestamps not in ("spread", "bursty"):
            raise ValueError("timestamps must be 'spread' or 'bursty'")


def load_topics() -> dict:
    text = resources.files("journeys.sample").joinpath("topics.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass
class SampleData:
    events: pa.Table
    items: pa.Table
    truth: pa.Table


def _title(template: str, phrase: str, phrase2: str) -> str:
    title = template.replace("{p2}", phrase2).replace("{p}", phrase)
    return title[0].upper() + title[1:]


def _catalogue(topics: list[dict], domains: dict, config: SampleConfig, rng: np.random.Generator):
    """Items per topic: domain templates filled with the topic's phrases (sometimes a relative's)."""
    family_members: dict[str, list[int]] = {}
    for index, topic in enumerate(topics):
        family_members.setdefault(topic["family"], []).append(index)

    items: list[dict] = []
    items_of_topic: list[list[int]] = []
    seen_titles: set[str] = set()
    for index, topic in enumerate(topics):
        domain = domains[topic["domain"]]
        relatives = [t for t in family_members[topic["family"]] if t != index]
        own = []
        attempts = 0
        while len(own) < config.items_per_topic and attempts < config.items_per_topic * 20:
            attempts += 1
            source = topic
            if relatives and rng.random() < config.overlap:
                source = topics[relatives[rng.integers(len(relatives))]]
            phrase, phrase2 = rng.choice(source["phrases"], size=2, replace=False)
            template = domain["title_templates"][rng.integers(len(domain["title_templates"]))]
            title = _title(template, str(phrase), str(phrase2))
            if title in seen_titles:
                continue
            seen_titles.add(title)
            tag_count = min(len(topic["tags"]), int(rng.integers(2, 4)))
            tags = [str(t) for t in rng.choice(topic["tags"], size=tag_count, replace=False)]
            own.append(len(items))
            items.append({"title": title, "tags": tags, "category": domain["label"], "topic": index})
        items_of_topic.append(own)

    # Opaque, shuffled ids, so that an id never hints at its topic.
    order = rng.permutation(len(items))
    for new_number, old_index in enumerate(order):
        items[old_index]["item_id"] = f"i{new_number:06d}"
    return items, items_of_topic, family_members


def _day_time(rng: np.random.Generator, day: int) -> int:
    seconds = int(rng.integers(7 * 3600, 24 * 3600))  # people click from morning to midnight
    return _START_MICROS + day * MICROS_PER_DAY + seconds * 1_000_000


def _choose_topics(rng, count: int, topics, family_members, overlap: float, exclude: set[int]) -> list[int]:
    chosen: list[int] = []
    while len(chosen) < count:
        pick = None
        if chosen and rng.random() < overlap:
            family = topics[chosen[rng.integers(len(chosen))]]["family"]
            candidates = [t for t in family_members[family] if t not in chosen and t not in exclude]
            if candidates:
                pick = candidates[rng.integers(len(candidates))]
        if pick is None:
            pick = int(rng.integers(len(topics)))
            if pick in chosen or pick in exclude:
                continue
        chosen.append(int(pick))
    return chosen


def generate(config: SampleConfig | None = None) -> SampleData:
    config = config or SampleConfig()
    rng = np.random.default_rng(config.seed)
    spec = load_topics()
    topics, domains = spec["topics"], spec["domains"]
    if config.domain != "all":
        if config.domain not in domains:
            raise ValueError(f"unknown domain '{config.domain}': choose all or one of {', '.join(sorted(domains))}")
        topics = [t for t in topics if t["domain"] == config.domain]
    if config.max_journeys + config.max_transient > len(topics):
        raise ValueError(f"max_journeys + max_transient must be at most {len(topics)}, the number of topics")
    items, items_of_topic, family_members = _catalogue(topics, domains, config, rng)

    test_count = max(1, round(len(topics) * config.test_share))
    test_topics = set(int(t) for t in rng.choice(len(topics), size=test_count, replace=False))

    rows: list[tuple] = []  # user, item index, micros, planted id, kind, topic index
    for user_number in range(config.users):
        user = f"u{user_number:05d}"
        n_journeys = int(rng.integers(config.min_journeys, config.max_journeys + 1))
        journey_topics = _choose_topics(rng, n_journeys, topics, family_members, config.overlap, set())
        signal: list[tuple] = []
        for number, topic in enumerate(journey_topics):
            planted = f"{user}/{number}"
            duration = int(rng.integers(21, min(config.span_days, 150) + 1))
            start = int(rng.integers(0, config.span_days - duration + 1))
            n_sessions = int(rng.integers(4, 13))
            middle = rng.choice(np.arange(start + 1, start + duration), size=n_sessions - 2, replace=False)
            days = [start, start + duration, *map(int, middle)]
            pool_size = min(int(rng.integers(6, 16)), len(items_of_topic[topic]))
            pool = rng.choice(items_of_topic[topic], size=pool_size, replace=False)
            for day in days:
                for _ in range(int(rng.integers(1, 5))):
                    item = int(pool[rng.integers(pool_size)])
                    signal.append((user, item, _day_time(rng, day), planted, "persistent", topic))
        n_transient = int(rng.integers(0, config.max_transient + 1))
        transient_topics = _choose_topics(rng, n_transient, topics, family_members, 0.0, set(journey_topics))
        for number, topic in enumerate(transient_topics, start=len(journey_topics)):
            planted = f"{user}/{number}"
            day = int(rng.integers(0, config.span_days))
            burst = rng.choice(items_of_topic[topic], size=int(rng.integers(2, 5)), replace=False)
            for item in burst:
                signal.append((user, int(item), _day_time(rng, day), planted, "transient", topic))
        n_noise = int(round(len(signal) * config.noise_share / (1 - config.noise_share)))
        for _ in range(n_noise):
            item = int(rng.integers(len(items)))
            signal.append((user, item, _day_time(rng, int(rng.integers(0, config.span_days))),
                           None, "noise", items[item]["topic"]))
        if config.timestamps == "bursty":
            signal = _in_sessions(signal, rng, config.span_days)
        # Two clicks on one item in the same second would be a duplicate event: keep one.
        unique = {(row[1], row[2]): row for row in signal}
        rows.extend(sorted(unique.values(), key=lambda row: (row[2], row[1])))

    return SampleData(
        events=_events_table(rows, items, domains, topics),
        items=_items_table(items),
        truth=_truth_table(rows, items, topics, test_topics),
    )


def _in_sessions(signal: list[tuple], rng: np.random.Generator, span_days: int) -> list[tuple]:
    """Re-time one user's events as logged in 1-3 sessions (in their original order, a few seconds
    apart), the way rating sites record a user rating a backlog of films in one sitting."""
    ordered = sorted(signal, key=lambda row: (row[2], row[1]))
    sessions = sorted(int(d) for d in rng.choice(span_days, size=int(rng.integers(1, 4)), replace=False))
    cuts = np.array_split(np.arange(len(ordered)), len(sessions))
    out = []
    for day, positions in zip(sessions, cuts):
        start = _START_MICROS + day * MICROS_PER_DAY + 18 * 3600 * 1_000_000
        for step, position in enumerate(positions):
            out.append((*ordered[position][:2], start + step * 20_000_000, *ordered[position][3:]))
    return out


def _events_table(rows, items, domains, topics) -> pa.Table:
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [items[r[1]]["item_id"] for r in rows],
            "timestamp": pa.array([r[2] for r in rows], type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "weight": pa.array([1.0] * len(rows), type=pa.float32()),
            "event_type": [domains[topics[items[r[1]]["topic"]]["domain"]]["event_type"] for r in rows],
        },
        schema=schema.EVENTS,
    )


def _items_table(items) -> pa.Table:
    ordered = sorted(items, key=lambda it: it["item_id"])
    return pa.table(
        {
            "item_id": [it["item_id"] for it in ordered],
            "title": [it["title"] for it in ordered],
            "tags": [it["tags"] for it in ordered],
            "category": [it["category"] for it in ordered],
            "text": pa.nulls(len(ordered), type=pa.string()),
        },
        schema=schema.ITEMS,
    )


def _truth_table(rows, items, topics, test_topics) -> pa.Table:
    # A noise click is not part of any planted interest; its topic is kept only for reference.
    planted_topic = [r[5] if r[4] != "noise" else None for r in rows]
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [items[r[1]]["item_id"] for r in rows],
            "timestamp": pa.array([r[2] for r in rows], type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "planted_id": [r[3] for r in rows],
            "kind": [r[4] for r in rows],
            "topic_id": [topics[t]["id"] if t is not None else None for t in planted_topic],
            "reference_name": [topics[t]["name"] if t is not None else None for t in planted_topic],
            "split": [
                ("test" if t in test_topics else "train") if t is not None else None for t in planted_topic
            ],
        },
        schema=schema.TRUTH,
    )
