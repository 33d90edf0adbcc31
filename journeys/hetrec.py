"""Convert HetRec 2011 MovieLens-2k (users' tag assignments, with times) into events, items and
reference groups.

The data set has no ratings here, only tagging: a user tagging a movie is the one sign that they
watched it, so each (user, movie) pair becomes one event at the user's first tag of that movie, and
the tags themselves become reference groups (``groups.parquet``: one user's tag over several of their
movies is a human-written name for a group of their items), kept apart from the item text so that
they never leak into it. The files are tab separated with a header line and no quoting (titles hold
literal double quotes); ``movies.dat`` and ``movie_directors.dat`` are Latin-1.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from journeys import io, schema
from journeys.inputs import InputError

TAGGINGS = "user_taggedmovies-timestamps.dat"
TAGS = "tags.dat"
MOVIES = "movies.dat"
GENRES = "movie_genres.dat"
DIRECTORS = "movie_directors.dat"
# The columns each file must have (the rest are ignored).
COLUMNS = {
    TAGGINGS: ("userID", "movieID", "tagID", "unixTimeStamp"),
    TAGS: ("id", "value"),
    MOVIES: ("id", "title", "year"),
    GENRES: ("movieID", "genre"),
    DIRECTORS: ("movieID", "directorName"),
}

MIN_ITEMS = 20  # distinct tagged movies a user needs: the 225 users the data set's readme describes

GROUPS = pa.schema([pa.field("user_id", pa.string(), nullable=False),
                    pa.field("item_id", pa.string(), nullable=False),
                    pa.field("tag", pa.string(), nullable=False)])

# Tags that say nothing about what a movie is about, left out of the reference groups: a journey
# cannot find "the movies I own on DVD" or "the movies I found boring" from the movies themselves,
# so such groups would only lower every method's recall alike. Chosen from the tags that one user
# gave to 3 or more movies; subject, genre, person, place, period, mood, style, studio and award
# tags are kept. Compared after folding (see ``fold``), so "Must-See" and "must see" are one.
_NON_TOPICAL_TAGS = (
    # owning the movie, the copy's format, where to get or watch it
    "dvd", "dvd1", "vhs", "divx", "divx1", "svcd", "s vcd", "bd-r", "hdtv", "tivo", "on dvr", "on disc",
    "on computer", "own", "own it", "owned", "my dvds", "my movies", "erlends dvds", "tumeys dvds", "tumeys vhs",
    "library vhs", "library on hold", "corvallis library", "not corv lib", "bibliothek", "buy", "need to buy",
    "need to own", "want to own", "jcl to buy", "do kupienia", "rent", "netflix", "netflix instant", "j netflix",
    "in netflix queue", "not available from netflix", "on request", "tcm", "legenda ptbr", "get", "want",
    # viewing status, and where or when it was seen
    "seen", "seen it", "seen 2006", "seen 2007", "seen 2008", "seen at the cinema", "seen more than once",
    "not seen", "didnt see", "didnt finish", "watched", "to see", "tosee", "movie to see", "need to see",
    "dont forget to see", "must see", "watch again", "want to see again", "tumeys to see again",
    "svens to see list", "cant remember", "dont remember", "not interested", "opening weekend", "okay once",
    "rewatchable", "do kina", "do zassania", "katsomattomat", "bab cinema", "amc 24", "movies 8", "jacksonville",
    # personal lists, codes and people (who it was seen with or recommended by)
    "favorites", "favourites", "almost favorite", "best movies ever", "best of 2005", "toplist06", "toplist07",
    "toplist08", "dani2006", "dani2007", "ummarti2006", "ummarti2007", "baalist2", "afternoon section",
    "friday night fare", "otherwise engaged", "without martha", "desert island flicks", "facebook rec", "dad",
    "mom", "kate", "brian", "darrin", "ari", "abe", "avi", "zim", "knoll", "seth", "mf", "bmf", "mnm", "oppl",
    "foqam", "new", "no", "ok", "flick",
    # judgements of taste, and rankings made of them
    "good", "bad", "great movie", "boring", "bore", "super boring", "overrated", "underrated", "awful movie",
    "horrible", "stupid", "idiotic", "pointless", "useless", "waste of celluloid", "sucks big time", "trash",
    "merde", "so bad its good", "brilliant", "delights", "enjoyable", "decent", "interesting", "very interesting",
    "super interesting", "forgettable", "disappointments", "expected more", "better than expected",
    "enjoyed despite myself", "nothing special", "hard to rate", "5 out of 5", "annoying", "predictable",
    "formulaic", "well done", "good acting", "great performances", "great cinematography", "great soundtrack",
    "awesome soundtrack", "excellent soundscore", "kickass", "guilty pleasure", "original", "highly quotable",
    "just didnt get it", "book was better", "massacred the book", "original medium was better", "read book first",
    "imdb top 250", "movielens top pick", "netflix top pick", "moviepig top pick", "recommendz top pick",
    "criticker top pick", "filmaffinity top pick", "likeilike top pick", "wikilens top pick", "yahoo top pick",
)


def fold(tag: str) -> str:
    """A tag as `journeys eval extraction --groups` compares tags: case-folded, every run of non-word
    characters one space, trimmed."""
    return re.sub(r"[\W_]+", " ", tag.casefold()).strip()


NON_TOPICAL = frozenset(fold(t) for t in _NON_TOPICAL_TAGS)


def _utf8_or_latin1(raw: bytes) -> str:
    """tags.dat is UTF-8 but for a few values written in Latin-1; each value is read as what it is."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _latin1(raw: bytes) -> str:
    return raw.decode("latin-1")


def _require(src: str) -> None:
    """Every file there, before any work: a missing one is named, not found out half-way."""
    for name in COLUMNS:
        fs, stripped = io.url_to_fs(io.join(src, name))
        if not fs.exists(stripped):
            raise InputError(f"HetRec MovieLens folder '{src}' has no {name}: pass the unpacked "
                             "hetrec2011-movielens-2k folder")


def _rows(src: str, name: str, decode: Callable[[bytes], str] = _utf8_or_latin1) -> Iterator[dict[str, str]]:
    """The rows of one file as dicts of its required columns. Plain tab splitting: the files have no
    quoting, so a title's double quotes are text."""
    path = io.join(src, name)
    fs, stripped = io.url_to_fs(path)
    with fs.open(stripped, "rb") as handle:
        lines = handle.read().splitlines()
    header = lines[0].decode("latin-1").lstrip("\ufeff").split("\t") if lines else []
    missing = [c for c in COLUMNS[name] if c not in header]
    if missing:
        raise InputError(f"'{path}' has no column(s) {missing} (it has: {header})")
    positions = [header.index(c) for c in COLUMNS[name]]
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(b"\t")
        if len(fields) < len(header):
            raise InputError(f"'{path}' line {number} has {len(fields)} fields, the header {len(header)}")
        yield {c: decode(fields[p]).strip() for c, p in zip(COLUMNS[name], positions)}


def _millis(value: str, src: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"'{io.join(src, TAGGINGS)}' has a unixTimeStamp that is not whole milliseconds: "
                         f"{value!r}") from None


def _first_tag_times(src: str, min_items: int) -> dict[tuple[str, str], int]:
    """(user, movie) -> the user's first tag time of it (epoch ms), for users with ``min_items``+ movies."""
    first: dict[tuple[str, str], int] = {}
    for row in _rows(src, TAGGINGS):
        key, ms = (row["userID"], row["movieID"]), _millis(row["unixTimeStamp"], src)
        first[key] = min(ms, first.get(key, ms))
    movies_of: dict[str, int] = defaultdict(int)
    for user, _ in first:
        movies_of[user] += 1
    return {k: v for k, v in first.items() if movies_of[k[0]] >= min_items}


def _events(first: dict[tuple[str, str], int]) -> pa.Table:
    rows = sorted((user, ms, movie) for (user, movie), ms in first.items())
    millis = pa.array([ms for _, ms, _ in rows], type=pa.int64())
    return pa.table(
        {
            "user_id": [u for u, _, _ in rows],
            "item_id": [m for _, _, m in rows],
            "timestamp": pc.multiply(millis, 1_000).cast(pa.timestamp("us", tz="UTC")),
            "weight": pa.array([1.0] * len(rows), type=pa.float32()),
            "event_type": ["tag"] * len(rows),
        },
        schema=schema.EVENTS,
    )


def _items(src: str, wanted: set[str]) -> pa.Table:
    """The movies in ``wanted``: "Title (year)", genres (file order) then director(s) as tags, the
    first genre as category."""
    genres: dict[str, list[str]] = defaultdict(list)
    for row in _rows(src, GENRES):
        genres[row["movieID"]].append(row["genre"])
    directors: dict[str, list[str]] = defaultdict(list)
    for row in _rows(src, DIRECTORS, _latin1):
        if row["directorName"]:
            directors[row["movieID"]].append(row["directorName"])
    records = []
    for row in _rows(src, MOVIES, _latin1):
        movie = row["id"]
        if movie in wanted:
            year = row["year"] if row["year"].isdigit() else ""
            records.append({"item_id": movie, "title": f"{row['title']} ({year})" if year else row["title"],
                            "tags": genres[movie] + directors[movie],
                            "category": genres[movie][0] if genres[movie] else None, "text": None})
    return pa.Table.from_pylist(records, schema=schema.ITEMS)


def _groups(src: str, first: dict[tuple[str, str], int]) -> tuple[pa.Table, int]:
    """(user, movie, tag) once each for the kept users, non-topical tags left out. Also returns how
    many such rows the non-topical filter left out."""
    text = {row["id"]: row["value"] for row in _rows(src, TAGS)}
    seen: set[tuple[str, str, str]] = set()
    left_out = 0
    for row in _rows(src, TAGGINGS):
        user, movie, tag = row["userID"], row["movieID"], text.get(row["tagID"])
        if (user, movie) not in first or not tag or (user, movie, tag) in seen:
            continue
        if fold(tag) in NON_TOPICAL:
            left_out += 1
            continue
        seen.add((user, movie, tag))
    rows = sorted(seen)
    return pa.table({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                     "tag": [r[2] for r in rows]}, schema=GROUPS), left_out


def _groups_of(groups: pa.Table, min_items: int = 3) -> int:
    """How many (user, folded tag) groups hold ``min_items``+ movies: the reference groups that
    `journeys eval extraction --groups` scores by default."""
    members: dict[tuple[str, str], set[str]] = defaultdict(set)
    for user, movie, tag in zip(*(groups[c].to_pylist() for c in ("user_id", "item_id", "tag"))):
        members[(user, fold(tag))].add(movie)
    return sum(len(m) >= min_items for m in members.values())


def convert(src: str, out: str, min_items: int = MIN_ITEMS) -> dict[str, int]:
    """Write ``events.parquet`` (one "tag" event per user and movie, weight 1), ``items.parquet`` and
    ``groups.parquet`` (user_id, item_id, tag) for the users who tagged ``min_items`` or more movies.

    Items are the movies in the events, not the whole catalogue: a movie no kept user tagged can be
    in no journey, and extraction embeds every item (the 225 default users tagged 5,561 of the 10,197)."""
    _require(src)
    first = _first_tag_times(src, min_items)
    events = _events(first)
    items = _items(src, {movie for _, movie in first})
    groups, left_out = _groups(src, first)
    unknown = len({movie for _, movie in first} - set(items["item_id"].to_pylist()))
    if unknown:
        raise InputError(f"'{io.join(src, MOVIES)}' lacks {unknown} movie(s) that {TAGGINGS} tags")
    io.write_table(events, io.join(out, "events.parquet"))
    io.write_table(items, io.join(out, "items.parquet"))
    io.write_table(groups, io.join(out, "groups.parquet"))
    return {"users": len({user for user, _ in first}), "events": events.num_rows, "items": items.num_rows,
            "group_rows": groups.num_rows, "non_topical_rows_left_out": left_out,
            "tag_groups_3_plus_items": _groups_of(groups)}
