"""Convert MovieLens files (ratings.csv, movies.csv, tags.csv) into our events/items format."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from journeys import io, schema
from journeys.inputs import InputError


def _read_csv(src: str, name: str, columns: dict[str, pa.DataType]) -> pa.Table:
    path = io.join(src, name)
    fs, stripped = io.url_to_fs(path)
    if not fs.exists(stripped):
        raise InputError(f"MovieLens folder '{src}' has no {name}")
    with fs.open(stripped, "rb") as handle:
        table = pacsv.read_csv(handle, convert_options=pacsv.ConvertOptions(column_types=columns))
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputError(f"'{path}' has no column(s) {missing}")
    return table


def convert(src: str, out: str) -> dict[str, int]:
    """Write ``events.parquet`` (ratings; weight = rating), ``items.parquet`` (title, genres as tags,
    first genre as category) and ``user_tags.parquet`` (the tags users gave movies: human-written
    names for groups of items, kept apart so they never leak into item text)."""
    ratings = _read_csv(src, "ratings.csv", {"userId": pa.string(), "movieId": pa.string(),
                                             "rating": pa.float32(), "timestamp": pa.int64()})
    movies = _read_csv(src, "movies.csv", {"movieId": pa.string(), "title": pa.string(), "genres": pa.string()})
    events = pa.table(
        {
            "user_id": ratings["userId"],
            "item_id": ratings["movieId"],
            "timestamp": pc.multiply(ratings["timestamp"], 1_000_000).cast(pa.timestamp("us", tz="UTC")),
            "weight": ratings["rating"],
            "event_type": pa.array(["rating"] * ratings.num_rows, type=pa.string()),
        },
        schema=schema.EVENTS,
    )
    genres = [
        [] if g in (None, "(no genres listed)") else g.split("|") for g in movies["genres"].to_pylist()
    ]
    items = pa.table(
        {
            "item_id": movies["movieId"],
            "title": movies["title"],
            "tags": genres,
            "category": [g[0] if g else None for g in genres],
            "text": pa.nulls(movies.num_rows, type=pa.string()),
        },
        schema=schema.ITEMS,
    )
    io.write_table(events, io.join(out, "events.parquet"))
    io.write_table(items, io.join(out, "items.parquet"))
    counts = {"events": events.num_rows, "items": items.num_rows}
    try:
        tags = _read_csv(src, "tags.csv", {"userId": pa.string(), "movieId": pa.string(),
                                           "tag": pa.string(), "timestamp": pa.int64()})
    except InputError:
        return counts
    user_tags = pa.table(
        {
            "user_id": tags["userId"],
            "item_id": tags["movieId"],
            "tag": tags["tag"],
            "timestamp": pc.multiply(tags["timestamp"], 1_000_000).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    io.write_table(user_tags, io.join(out, "user_tags.parquet"))
    counts["user_tags"] = user_tags.num_rows
    return counts
