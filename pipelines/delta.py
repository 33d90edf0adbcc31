"""Delta runs: continue an extraction from its previous run with only the events since then.

Every extraction writes, besides its journeys, what a later run needs to go on without reading an
older event file again: ``history/`` (each user's events, packed) and ``catalogue/`` (each item's
text vector). A delta run (``journeys extract --previous RUN --delta --events NEW``):

- clusters again only the users with new events, from their whole history (the previous run's
  history plus the new events), as a fresh run over all events would (the same result, given the
  same item vectors and statistics);
- copies every other user's rows of journeys/, transient/, users/, lineage/ and history/ from the
  previous run as they were (``PreviousShard``): the same values, so their lineage rows keep the
  previous run's ``run_time``;
- embeds only items that are new or whose title or context changed (``CarriedVectors``);
- computes the catalogue statistics afresh over every item with events, old and new (or every
  catalogue item, with ``--statistics catalogue``), as a fresh run over all events would. Carried
  users keep what the statistics of their last extraction gave them: docs/incremental.md.

The previous run's files are read shard by shard: user ``u``'s rows are in ``part-<shard(u)>`` of
each dataset, so the delta run must keep the previous run's ``--num_shards``.
"""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from journeys import io
from journeys.model import Event
from pipelines import packed_events
from pipelines.transforms import ReadRows, own_row

# The per-user datasets a delta run carries, each sorted by user id first in its shard file.
CARRIED = ("journeys", "transient", "users", "lineage", "history")


def history_row(user_id: str, events: list[Event]) -> dict:
    """A user's history row; ``events`` are in time order, as ``dedupe_events`` leaves them."""
    return {"user_id": user_id, "num_events": len(events), "first_ts": events[0].ts,
            "last_ts": events[-1].ts, "events": [packed_events.pack(e) for e in events]}


def history_events(row: dict) -> list[Event]:
    return [packed_events.unpack(packed) for packed in row["events"]]


def shard_file(folder: str, dataset: str, shard: int) -> str:
    return io.join(folder, dataset, f"part-{shard:05d}.parquet")


class PreviousShard:
    """One shard's rows of the previous extraction, by user: ``rows[user][dataset]`` is a list of
    row dicts, in the order the previous run wrote them (a shard with no rows has no file)."""

    def __init__(self, folder: str, shard: int):
        self.rows: dict[str, dict[str, list[dict]]] = {}
        for dataset in CARRIED:
            path = shard_file(folder, dataset, shard)
            fs, stripped = io.url_to_fs(path)
            if not fs.exists(stripped):
                continue
            table = io.read_table(path)
            # Times as integer microseconds, as the per-user step makes them, so that carried rows and
            # recomputed ones are written alike.
            table = pa.table({name: column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
                              for name, column in zip(table.column_names, table.columns)})
            users = table.column("user_id").to_pylist()
            for user, row in zip(users, table.to_pylist()):
                self.rows.setdefault(user, {name: [] for name in CARRIED})[dataset].append(row)

    def users(self) -> set[str]:
        return set(self.rows)

    def take(self, user_id: str) -> dict[str, list[dict]]:
        """The user's rows (empty lists for a user the previous run did not have), forgotten here."""
        return self.rows.pop(user_id, None) or {name: [] for name in CARRIED}


def _carried_vector(element):
    """(item_id, {"item": [Item], "carried": [(content_key, vector)]}) -> (item, vector) when the
    previous run embedded this very content; the item tagged 'miss' (to embed) otherwise."""
    _, grouped = element
    carried = list(grouped["carried"])
    for item in grouped["item"]:
        if carried and carried[0][0] == item.content_key():
            yield item, np.asarray(carried[0][1], dtype=np.float32)
        else:
            yield beam.pvalue.TaggedOutput("miss", item)


class PreviousVectors(beam.PTransform):
    """The previous run's catalogue/ -> (item_id, (content_key, vector)) for each item it embedded."""

    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder

    def expand(self, pbegin):
        return (pbegin | "ReadCatalogue" >> ReadRows(io.join(self.folder, "catalogue"))
                | "CatalogueRows" >> beam.Map(own_row)
                | "KeyCatalogue" >> beam.Map(lambda r: (r["item_id"], (r["content_key"], r["vector"]))))


class CarriedVectors(beam.PTransform):
    """(Item) with events -> {"hit": (item, vector) carried from the previous run, "miss": items to
    embed}. A vector is carried only for the same content (``Item.content_key``): an edited title or
    context is embedded again."""

    def __init__(self, carried):
        super().__init__()
        self.carried = carried

    def expand(self, items):
        return ({"item": items | "KeyForCarried" >> beam.Map(lambda it: (it.item_id, it)), "carried": self.carried}
                | "JoinCarried" >> beam.CoGroupByKey()
                | "SplitCarried" >> beam.FlatMap(_carried_vector).with_outputs("miss", main="hit"))


def catalogue_row(pair) -> dict:
    item, vector = pair
    return {"item_id": item.item_id, "content_key": item.content_key(), "vector": vector.tolist()}


def count_carried(rows: dict[str, list[dict]], counts: dict) -> None:
    """A carried user's counts, read off their rows, so the summary covers every user in the output."""
    def count(name: str, n: int = 1) -> None:
        counts[name] = counts.get(name, 0) + n

    journeys, transient = rows["journeys"], rows["transient"]
    for user in rows["users"]:  # none for a user whose events were all rejected last time
        for name, n in ((f"users_rule.{user['persistence_rule']}", 1), (f"users_outcome.{user['outcome']}", 1),
                        ("users", 1), ("users_with_journeys", int(bool(journeys))), ("noise_events",
                                                                                     user["noise_events"]),
                        ("delta.users.carried", 1), ("delta.events.carried", user["num_events"])):
            count(name, n)
    for name, n in (("journeys", len(journeys)), ("transient_clusters", len(transient)),
                    ("events_in_journeys", sum(r["num_events"] for r in journeys)),
                    ("events_in_transient", sum(r["num_events"] for r in transient)),
                    ("delta.journeys.carried", len(journeys))):
        count(name, n)


def summary(delta: dict[str, int], journeys: int) -> dict:
    """A delta run's carried and recomputed parts. Wall seconds are summed over shards (workers'
    time, not the job's), so the two parts compare with each other, not with the run's wall time."""
    carried_journeys = delta.get("journeys.carried", 0)
    return {
        "users": {"carried": delta.get("users.carried", 0), "recomputed": delta.get("users.recomputed", 0),
                  "new": delta.get("users.new", 0)},
        "events": {"new_late": delta.get("events.late", 0),
                   "new_repeating_history": delta.get("events.repeats_of_history", 0),
                   "from_history": delta.get("events.from_history", 0), "carried": delta.get("events.carried", 0)},
        "journeys": {"carried": carried_journeys, "recomputed": journeys - carried_journeys},
        "wall_seconds": {"carry": delta.get("carry_ms", 0) / 1000, "recompute": delta.get("recompute_ms", 0) / 1000},
    }
