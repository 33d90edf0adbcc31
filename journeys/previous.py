"""Up-front checks of a ``--previous`` folder: an earlier run that this one builds on.

Each step finds its own part of the earlier run: extract its journeys/, name its named/, export its
journey_labels/. A folder is accepted as that step's own output folder or as the folder given to
``journeys run --out`` (which holds extract/, named/ and export/). It is refused, before any work,
when it has no summary (or manifest), so it may be partial; when it was written with another schema
version or another embedding model; or when it is about another set of users: not one of its users
has an event in this run's input.
"""

from __future__ import annotations

import json

from journeys import io, schema
from journeys.inputs import InputError, check_dataset
from journeys.validation import parse_timestamp


def _exists(path: str) -> bool:
    fs, stripped = io.url_to_fs(path)
    return fs.exists(stripped)


def _read_json(path: str) -> dict:
    fs, stripped = io.url_to_fs(path)
    with fs.open(stripped, "r", encoding="utf-8") as handle:
        return json.load(handle)


def _resolve(previous: str, step: str, sub: str, dataset: str, marker: str) -> str:
    """The step's output folder: ``previous`` itself or ``previous/sub`` (in a run folder)."""
    folders = (previous, io.join(previous, sub))
    for folder in folders:
        if _exists(io.join(folder, dataset)) and _exists(io.join(folder, marker)):
            return folder
    for folder in folders:
        if _exists(io.join(folder, dataset)) and not _exists(io.join(folder, marker)):
            raise InputError(f"--previous '{folder}' has {dataset}/ but no {marker}: that run did not "
                             "finish (it may be partial); pass a run that completed")
    raise InputError(f"--previous '{previous}' holds no {dataset}/ with a {marker}: pass the folder of an "
                     f"earlier `journeys {step}` or `journeys run`")


def _check_version(found: str | None, folder: str, marker: str) -> None:
    if found != schema.SCHEMA_VERSION:
        raise InputError(f"--previous '{folder}' was written with schema version {found} ({marker}); this "
                         f"release reads version {schema.SCHEMA_VERSION}: start afresh without --previous")


def journeys_folder(previous: str) -> str:
    """Where the previous run's journeys are (no checks: see ``previous_journeys``)."""
    return io.join(_resolve(previous, "extract", "extract", "journeys", "summary.json"), "journeys")


def previous_journeys(previous: str, embedding_model: str, events: str) -> str:
    """The previous run's journeys/ folder, checked against this extraction's model and events."""
    folder = _resolve(previous, "extract", "extract", "journeys", "summary.json")
    summary = _read_json(io.join(folder, "summary.json"))
    _check_version(summary.get("schema_version"), folder, "summary.json")
    used = summary.get("config", {}).get("embedding_model")
    if used != embedding_model:
        raise InputError(f"--previous '{folder}' was extracted with embedding model '{used}', this run uses "
                         f"'{embedding_model}': centroids of two models cannot be compared")
    journeys = io.join(folder, "journeys")
    check_dataset(journeys, schema.JOURNEYS, "previous journeys", "pass an earlier run's folder")
    users = set(io.read_table(journeys, columns=["user_id"])["user_id"].to_pylist())
    if users and not any_user_in(events, users):
        raise InputError(f"--previous '{folder}' is about other users: none of its {len(users)} users has an "
                         f"event in '{events}'")
    return journeys


def named_folder(previous: str) -> str:
    """Where the previous run's named journeys are (no checks: see ``previous_named``)."""
    return io.join(_resolve(previous, "name", "named", "named", "summary.json"), "named")


def previous_named(previous: str) -> str:
    """The previous run's named/ folder."""
    folder = _resolve(previous, "name", "named", "named", "summary.json")
    _check_version(_read_json(io.join(folder, "summary.json")).get("schema_version"), folder, "summary.json")
    named = io.join(folder, "named")
    check_dataset(named, schema.NAMED_JOURNEYS, "previous named journeys", "pass an earlier run's folder")
    return named


def named_encoder(previous: str) -> str | None:
    """The sentence encoder the previous run grounded its names with (its summary's config), or
    None where the summary does not say."""
    folder = _resolve(previous, "name", "named", "named", "summary.json")
    return _read_json(io.join(folder, "summary.json")).get("config", {}).get("encoder")


def labels_folder(previous: str) -> str:
    """Where the previous export's labels are (no checks: see ``previous_labels``)."""
    return io.join(_resolve(previous, "export", "export", "journey_labels", "_manifest.json"), "journey_labels")


def previous_labels(previous: str) -> str:
    """The previous export's journey_labels/ folder (Parquet)."""
    return checked_labels(previous)[0]


def checked_labels(previous: str) -> tuple[str, list[dict]]:
    """The previous export's journey_labels/ folder and its files' fingerprints as verified."""
    folder = _resolve(previous, "export", "export", "journey_labels", "_manifest.json")
    manifest = _read_json(io.join(folder, "_manifest.json"))
    _check_version(manifest.get("schema", {}).get("version"), folder, "_manifest.json")
    if manifest.get("format") != "parquet":
        raise InputError(f"--previous '{folder}' is a {manifest.get('format')} export: build on a Parquet one")
    labels = io.join(folder, "journey_labels")
    verified = check_dataset(labels, schema.JOURNEY_LABELS, "previous journey labels", "pass an earlier export",
                             marker="_manifest.json")
    return labels, verified


def any_user_in(events: str, users: set[str]) -> bool:
    """Whether some event in ``events`` belongs to one of ``users``; stops at the first one found."""
    for file in io.list_input_files(events):
        if io.file_format(file) == "parquet":
            fs, stripped = io.url_to_fs(file)
            with fs.open(stripped, "rb") as handle:
                for batch in io.parquet_file(handle).iter_batches(columns=["user_id"], batch_size=65536):
                    if any(str(u) in users for u in batch.column(0).to_pylist() if u is not None):
                        return True
        else:
            for row, _ in io.iter_rows(file):
                if row and row.get("user_id") is not None and str(row["user_id"]) in users:
                    return True
    return False


# What a delta run continues from, beside the journeys: every one is verified before any work.
DELTA_DATASETS = {"journeys": schema.JOURNEYS, "transient": schema.TRANSIENT, "users": schema.USERS,
                  "lineage": schema.LINEAGE, "history": schema.HISTORY, "catalogue": schema.CATALOGUE}


def previous_extraction(previous: str, embedding_model: str, num_shards: int, clustering: dict) -> str:
    """For a delta run: the previous extraction's folder, with every dataset it carries verified.
    ``clustering``: this run's options that decide a user's journeys, which must be the previous run's."""
    folder = extraction_folder(previous)
    summary = _read_json(io.join(folder, "summary.json"))
    _check_version(summary.get("schema_version"), folder, "summary.json")
    config = summary.get("config", {})
    if config.get("embedding_model") != embedding_model:
        raise InputError(f"--previous '{folder}' was extracted with embedding model '{config.get('embedding_model')}', "
                         f"this run uses '{embedding_model}': a delta run must keep the model")
    if "history" not in summary.get("outputs", {}):
        raise InputError(f"--previous '{folder}' has no history/: it was written by a release before delta runs; "
                         "run once without --delta over all events, then build on that run")
    if config.get("num_shards") != num_shards:
        raise InputError(f"--previous '{folder}' was written in {config.get('num_shards')} shards, this run asks "
                         f"for {num_shards}: a delta run reads the previous run shard by shard, so pass "
                         f"--num_shards {config.get('num_shards')}")
    ours = json.loads(json.dumps(clustering))  # as the summary holds them (lists, not tuples)
    changed = sorted(key for key, value in ours.items() if config.get(key) != value)
    if changed:
        raise InputError(f"--previous '{folder}' was extracted with other {', '.join(changed)} than this run: a "
                         "delta run keeps the previous run's extraction options, or carried and recomputed users "
                         "would be clustered differently; run without --delta to change them")
    for name, expected in DELTA_DATASETS.items():
        check_dataset(io.join(folder, name), expected, f"previous {name}", "pass an earlier run's folder")
    return folder


def extraction_folder(previous: str) -> str:
    """The previous extraction's own folder (no checks: see ``previous_extraction``)."""
    return _resolve(previous, "extract", "extract", "journeys", "summary.json")


def as_of(folder: str) -> int | None:
    """An extraction's as-of time in microseconds (the latest valid event it read), from its summary."""
    stamp = _read_json(io.join(folder, "summary.json")).get("as_of")
    return None if stamp is None else parse_timestamp(stamp)
