"""Training pairs for the tuned namers: item titles (and keywords) -> a journey name.

Three sources, each a different kind of name:
- the curated exemplar bank under ``prompts/`` (hand-written);
- the sample generator's *train* topics (each planted persistent interest, named by its topic);
- MovieLens user tags: a tag that one user gave to 3 or more movies names that group of movies.

Held-out *test* topics never enter training: only train-split interests are used, and any pair from
another source whose name is a test topic's name is dropped and counted. MovieLens groups are split
the same way (one in five, by hash), so the held-out groups can serve as a reference set.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from journeys import io
from journeys.naming.prompting import load_exemplars
from journeys.naming.validation import problem, title_case

MAX_TITLES = 10
MAX_KEYWORDS = 5
PAIRS_PER_TOPIC = 3  # planted interests of one topic are many; a few keep topics balanced


@dataclass(frozen=True)
class Pair:
    titles: tuple[str, ...]
    keywords: tuple[str, ...]
    name: str
    source: str


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def bank_pairs(path: str | None = None) -> list[Pair]:
    return [Pair(e.titles, e.keywords, e.name, "bank") for e in load_exemplars(path)]


def _top_keywords(tag_lists: list[list[str]]) -> tuple[str, ...]:
    counts = Counter(t.replace("-", " ").replace("_", " ").casefold() for tags in tag_lists for t in tags or [])
    return tuple(t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_KEYWORDS])


def _items_by_id(items_path: str) -> dict[str, dict]:
    table = io.read_table(items_path, columns=["item_id", "title", "tags"])
    return {row["item_id"]: row for row in table.to_pylist()}


def sample_pairs(truth_path: str, items_path: str) -> tuple[list[Pair], set[str]]:
    """Pairs from the train topics' planted persistent interests, and the test topics' name keys."""
    truth = io.read_table(truth_path, columns=["planted_id", "kind", "topic_id", "item_id", "reference_name",
                                               "split"]).to_pylist()
    items = _items_by_id(items_path)
    test_names = {_key(r["reference_name"]) for r in truth if r["split"] == "test" and r["reference_name"]}
    members: dict[str, Counter] = defaultdict(Counter)
    topic_of: dict[str, tuple[str, str]] = {}
    for row in truth:
        if row["kind"] == "persistent" and row["split"] == "train":
            members[row["planted_id"]][row["item_id"]] += 1
            topic_of[row["planted_id"]] = (row["topic_id"], row["reference_name"])
    pairs, per_topic = [], Counter()
    for planted in sorted(members):
        topic, name = topic_of[planted]
        if per_topic[topic] >= PAIRS_PER_TOPIC:
            continue
        per_topic[topic] += 1
        ordered = [i for i, _ in sorted(members[planted].items(), key=lambda kv: (-kv[1], kv[0])) if i in items]
        titles = tuple(items[i]["title"] for i in ordered[:MAX_TITLES])
        pairs.append(Pair(titles, _top_keywords([items[i]["tags"] for i in ordered]), title_case(name), "sample"))
    return pairs, test_names


def movielens_split(user: str, tag: str) -> str:
    """A fixed train/test split of (user, tag) groups, by hash, so evaluation groups never train."""
    digest = hashlib.sha1(f"{user}\x1f{_key(tag)}".encode()).digest()
    return "test" if digest[0] % 5 == 0 else "train"


def movielens_pairs(user_tags_path: str, items_path: str, min_items: int = 3, split: str = "train") -> list[Pair]:
    """A (user, tag) with at least ``min_items`` distinct movies is a named group of items; one in
    five groups (by hash) is held out as the ``test`` split."""
    tags = io.read_table(user_tags_path, columns=["user_id", "item_id", "tag"]).to_pylist()
    items = _items_by_id(items_path)
    groups: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for row in tags:
        if row["tag"] and row["item_id"] in items:
            groups[(row["user_id"], _key(row["tag"]))].setdefault(row["item_id"], row["tag"].strip())
    pairs = []
    for (user, tag_key), movies in sorted(groups.items()):
        if len(movies) < min_items or movielens_split(user, tag_key) != split:
            continue
        ordered = sorted(movies)
        titles = tuple(items[i]["title"] for i in ordered[:MAX_TITLES])
        tag = Counter(movies.values()).most_common(1)[0][0]
        name = title_case(tag) if tag == tag.lower() else tag
        if problem(name, list(titles)) is None:
            pairs.append(Pair(titles, _top_keywords([items[i]["tags"] for i in ordered]), name, "movielens"))
    return pairs


def build_pairs(truth: str | None = None, items: str | None = None, user_tags: str | None = None,
                movielens_items: str | None = None, bank: bool | str = True) -> tuple[list[Pair], dict]:
    """All pairs from the chosen sources, without duplicates or test-topic names, and counts.
    ``bank`` is True for the curated exemplar bank, a path for another bank, or False for none."""
    pairs: list[Pair] = bank_pairs(None if bank is True else bank) if bank else []
    counts: dict[str, int] = {"bank": len(pairs)}
    test_names: set[str] = set()
    if truth:
        if not items:
            raise ValueError("sample pairs need the sample's items as well as its truth")
        found, test_names = sample_pairs(truth, items)
        pairs += found
        counts["sample"] = len(found)
    if user_tags:
        if not movielens_items:
            raise ValueError("MovieLens pairs need the converted items.parquet as well as user_tags.parquet")
        found = movielens_pairs(user_tags, movielens_items)
        pairs += found
        counts["movielens"] = len(found)
    kept, seen = [], set()
    counts["dropped_test_topic_names"] = counts["duplicates"] = 0
    for pair in pairs:
        if _key(pair.name) in test_names:
            counts["dropped_test_topic_names"] += 1
            continue
        identity = (_key(pair.name), pair.titles)
        if identity in seen:
            counts["duplicates"] += 1
            continue
        seen.add(identity)
        kept.append(pair)
    counts["pairs"] = len(kept)
    return kept, counts


def write_pairs(pairs: list[Pair], path: str) -> None:
    io.write_text("".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs), path)


def read_pairs(path: str) -> list[Pair]:
    pairs = []
    fs, local = io.url_to_fs(path)
    with fs.open(local, "r", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                titles = tuple(str(t) for t in row["titles"])
                name = str(row["name"]).strip()
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}, line {number}: expected titles and a name ({err})") from err
            if not titles or not name:
                raise ValueError(f"{path}, line {number}: a pair needs at least one title and a name")
            pairs.append(Pair(titles, tuple(row.get("keywords", ())), name, row.get("source", "file")))
    if not pairs:
        raise ValueError(f"{path} holds no training pairs")
    return pairs


def pairs_hash(pairs: list[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(asdict(pair), ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()
