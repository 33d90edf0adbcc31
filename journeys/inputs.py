"""The input contract every command keeps before it does any work: each input file is checked, so
that a wrong file fails in a second with a message naming it and saying what to do.

- Raw tables (events, items, users): every file behind the path, however many, must have a format
  this tool reads (``.parquet``, ``.csv``, ``.jsonl``, ``.json``, and ``.csv.gz`` / ``.jsonl.gz``;
  anything else is refused by name, never skipped), be readable and have the required columns. A
  Parquet file one of our steps wrote must be of a schema version this release reads.
- Our own datasets (journeys, named journeys, embeddings): every file must be Parquet with the
  expected schema name (the dataset kind: a ``transient/`` or ``dead_letter/`` folder is not
  ``journeys``) and version and the expected columns, and the folder must match what the step that
  wrote it recorded in the ``summary.json`` beside it (its files, each file's size and SHA-256, and
  the row count; ``journeys.integrity``): a folder whose step did not finish, that lost or gained a
  file, or whose file changed since (truncated, appended to, swapped, a byte changed) is refused.
- Raw inputs with no rows at all are refused (``check_has_rows``).

Problems inside a readable file are per row: the row goes to the dead letters with a reason.
"""

from __future__ import annotations

import contextlib
import json
import posixpath

import pyarrow as pa
import pyarrow.compute as pc

from journeys import integrity, io, schema
from journeys.integrity import WRITTEN_BY

SUMMARY = "summary.json"


class InputError(ValueError):
    """An input the user must fix; the message says what and where."""


def _files(path: str, what: str) -> list[str]:
    try:
        return io.list_input_files(path)
    except FileNotFoundError as err:
        raise InputError(f"{what}: {err}") from None


def check_columns(path: str, required: tuple[str, ...], what: str) -> list[str]:
    """Every file of a raw table: a readable format with the ``required`` columns. Returns the files."""
    files = _files(path, what)
    for file in files:
        try:
            columns = io.read_columns(file)
            if io.file_format(file) == "parquet":
                with io.open_input(file) as handle:
                    _check_version(io.parquet_file(handle).schema_arrow, file)
        except (ValueError, UnicodeDecodeError) as err:
            if isinstance(err, pa.ArrowException) or isinstance(err, UnicodeDecodeError):
                raise InputError(f"{what} file '{file}' cannot be read ({err}); check that it is a complete "
                                 "file of the format its name says") from None
            raise InputError(f"{what}: {err}") from None
        except Exception as err:  # an unreadable file (damaged, truncated, not what its name says)
            raise InputError(f"{what} file '{file}' cannot be read ({type(err).__name__}: {err}); "
                             "check that it is a complete file of the format its name says") from None
        if not columns:
            continue  # an empty file holds no rows; nothing is lost
        missing = [c for c in required if c not in columns]
        if missing:
            raise InputError(
                f"{what} file '{file}' has no column {', '.join(repr(m) for m in missing)} "
                f"(it has: {', '.join(columns) or 'no columns'}); required: {', '.join(required)}"
            )
    return files


def _check_version(found: pa.Schema, file: str) -> None:
    """A raw input may be any of our tables (or none), but of a schema version this release reads."""
    kind = (found.metadata or {}).get(b"journeys.schema", b"").decode()
    if kind:
        schema.check_version(found, kind, file)


def check_dataset(path: str, expected: pa.Schema, what: str, hint: str, marker: str = SUMMARY) -> list[dict] | None:
    """Check a Parquet dataset one of our steps wrote, or raise an InputError naming what is wrong:
    a missing folder, a file that is not Parquet or cannot be read, a folder that does not match its
    step's summary (files, sizes, content hashes, rows), another dataset kind or schema version, or
    a missing column. ``hint`` says which folder to pass (e.g. "pass the named/ folder written by
    `journeys name`"). Returns the files' fingerprints as verified (``{"path", "size", "sha256"}``,
    paths inside the folder), or None for a single file or a glob (nothing recorded to compare with).

    The footers are read first (another dataset kind, passed by mistake, is told as such), then
    every byte is compared with the summary; a footer that cannot be read is compared at once, so
    a damaged file is refused as the file its step did not write, not as a puzzling format error."""
    name = expected.metadata[b"journeys.schema"].decode()
    files = _files(path, what)
    for file in files:
        try:
            fmt = io.file_format(file)
        except ValueError:
            fmt = None
        if fmt != "parquet":
            raise InputError(f"{what}: '{file}' is not Parquet; {hint}")
    step = WRITTEN_BY.get(name)
    for file in files:
        try:
            with io.open_input(file) as handle:
                found = io.parquet_file(handle).schema_arrow
        except Exception as err:  # an unreadable file: say which one, and what differs if it changed
            check_complete(path, what, hint, marker, step)
            raise InputError(f"{what} file '{file}' cannot be read ({type(err).__name__}: {err}); "
                             f"re-run the step that wrote it") from None
        kind = (found.metadata or {}).get(b"journeys.schema", b"").decode()
        if kind != name:
            held = f"'{kind}' records" if kind else "a table this tool did not write"
            raise InputError(f"{what} file '{file}' holds {held}, expected '{name}'; {hint}")
        try:
            schema.check_version(found, name, file)
        except ValueError as err:
            raise InputError(f"{err} ({hint})") from None
        missing = [c for c in expected.names if c not in found.names]
        if missing:
            raise InputError(f"{what} file '{file}' has no column {', '.join(map(repr, missing))}")
    return check_complete(path, what, hint, marker, step)


def relative_paths(files: list[str], folder: str) -> list[str]:
    _, base = io.url_to_fs(folder)
    return [posixpath.relpath(io.url_to_fs(f)[1], base.rstrip("/")) for f in files]


def count_rows(file: str) -> int:
    if io.file_format(file) == "parquet":
        with io.open_input(file) as handle:
            return io.parquet_file(handle).metadata.num_rows
    with io.open_input(file) as handle:
        return sum(1 for line in handle if line.strip())


def describe_dataset(folder: str, fingerprints: dict[str, dict] | None = None) -> dict:
    """A published dataset as its step's summary records it: its files (relative to it, sorted),
    rows, and each file's size and SHA-256 (``integrity.record``). ``fingerprints``: what the
    writers hashed as they wrote, by relative path; a file not among them is read and hashed here."""
    files = io.list_input_files(folder)
    relative = relative_paths(files, folder)
    known = dict(fingerprints or {})
    for file, rel in zip(files, relative):
        if rel not in known:
            fs, stripped = io.url_to_fs(file)
            with fs.open(stripped, "rb") as handle:
                known[rel] = integrity.fingerprint_handle(handle)
    return {"files": sorted(relative), "rows": sum(count_rows(file) for file in files),
            **integrity.record({rel: known[rel] for rel in relative})}


def check_complete(path: str, what: str, hint: str, marker: str = SUMMARY,
                   step: str | None = None) -> list[dict] | None:
    """A dataset folder against the marker its step wrote beside it, last, on success
    (``summary.json``; an export's ``_manifest.json``): the same files, each of the recorded size and
    SHA-256, and the recorded rows. Returns the verified fingerprints (``{"path", "size", "sha256"}``),
    or None for a single file or a glob. ``step``: the command that writes this dataset, named in
    the refusal as the one to re-run."""
    fs, stripped = io.url_to_fs(path)
    if not fs.isdir(stripped):
        return None  # one file or a glob: a part chosen on purpose, nothing to compare with
    rerun = f"re-run `{step}`" if step else "re-run the step that wrote it"
    folder = stripped.rstrip("/")
    parent, name = posixpath.split(folder)
    summary_path = io._with_protocol(fs, f"{parent}/{marker}")
    if not fs.exists(f"{parent}/{marker}"):
        raise InputError(f"{what} '{path}' has no {marker} beside it ({summary_path}): the step that wrote it "
                         f"did not finish (it was stopped, failed or is still running), or the folder was copied "
                         f"without it; re-run that step ({hint})")
    try:
        with fs.open(f"{parent}/{marker}", "r", encoding="utf-8") as handle:
            recorded = json.load(handle).get("outputs", {}).get(name)
    except (ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise InputError(f"{summary_path} does not record the '{name}' dataset (an older release, or not "
                         f"this dataset's summary): re-run the step that wrote '{path}' ({hint})")
    files = io.list_input_files(path)
    relative = relative_paths(files, path)
    recorded_files = recorded.get("files") or []
    if sorted(relative) != sorted(recorded_files):
        missing = sorted(set(recorded_files) - set(relative))
        extra = sorted(set(relative) - set(recorded_files))
        changes = "".join([f"; missing: {', '.join(missing)}" if missing else "",
                           f"; not written by that step: {', '.join(extra)}" if extra else ""])
        raise InputError(f"{what} '{path}' does not match {summary_path}: it records "
                         f"{len(recorded_files)} files and {recorded.get('rows')} rows, the folder "
                         f"holds {len(files)} files{changes}; {rerun} to write it again")
    expected = integrity.recorded_fingerprints(recorded)
    if expected is None:
        raise InputError(f"{summary_path} records no sizes and SHA-256 hashes of the '{name}' files (written by an "
                         f"older release), so they cannot be verified: {rerun} ({hint})")
    verified = []
    for file, rel, difference, fingerprint in compare_files(files, relative, expected):
        if difference:
            raise InputError(f"{what} file '{file}' {difference}; it is not what {summary_path} records, so it is "
                             f"not read: {rerun} to write it again")
        verified.append({"path": rel, **fingerprint})
    rows = sum(count_rows(file) for file in files)
    if rows != recorded.get("rows"):
        raise InputError(f"{what} '{path}' holds {rows} rows, {summary_path} records {recorded.get('rows')} "
                         f"(the summary was edited?); {rerun} to write it again")
    return verified


def compare_files(files: list[str], relative: list[str], expected: dict[str, dict]):
    """Each recorded file against its record, in path order: ``(file, relative path, what differs or
    None, fingerprint)``. A file of another size is told without reading it; the others are hashed."""
    for file, rel in sorted(zip(files, relative), key=lambda pair: pair[1]):
        fs, stripped = io.url_to_fs(file)
        fingerprint: dict = {}

        def read(fs=fs, stripped=stripped, fingerprint=fingerprint) -> dict:
            with fs.open(stripped, "rb") as handle:  # the bytes as stored (never decompressed)
                fingerprint.update(integrity.fingerprint_handle(handle))
            return fingerprint

        difference = integrity.compare(rel, expected[rel], fs.size(stripped), read, expected)
        yield file, rel, difference, fingerprint


def has_column(path: str, column: str) -> bool:
    """Whether some file of a (checked) raw table has ``column``."""
    return any(column in io.read_columns(file) for file in _files(path, "input"))


def check_vectors(path: str, what: str, column: str = "embedding") -> int | None:
    """Every file's ``column`` of item vectors: lists of numbers, all of one length across the files.
    Returns that length (None when no file has the column). Read before any work, column only, so a
    wrong file stops the run in seconds naming it, not in the middle of clustering. Rows with no
    vector or a NaN are per-row problems (dead letters), not checked here."""
    width, first_file = None, None
    for file in _files(path, what):
        if column not in io.read_columns(file):
            continue
        if io.file_format(file) == "parquet":
            with io.open_input(file) as handle:
                parquet = io.parquet_file(handle)
                kind = parquet.schema_arrow.field(column).type
                if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) \
                        or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
                    raise InputError(f"{what} file '{file}': column '{column}' is {kind}, not a list of numbers")
                lengths = set()
                for batch in parquet.iter_batches(columns=[column]):
                    lengths.update(x for x in pc.unique(pc.list_value_length(batch.column(0))).to_pylist()
                                   if x is not None)
        else:
            lengths = set()
            for row, _problem, number in io.iter_numbered_rows(file):
                value = (row or {}).get(column)
                if isinstance(value, str) and value.strip():
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        raise InputError(f"{what} file '{file}' row {number}: column '{column}' is not a JSON "
                                         "list of numbers") from None
                if value is None or value == "":
                    continue
                if not isinstance(value, list) or not all(isinstance(x, (int, float)) or x is None for x in value):
                    raise InputError(f"{what} file '{file}' row {number}: column '{column}' is not a list of numbers")
                lengths.add(len(value))
        for length in sorted(lengths):
            if width is None:
                width, first_file = length, file
            elif length != width:
                where = "" if first_file == file else f" ('{first_file}' has {width})"
                raise InputError(f"{what} file '{file}': vectors in column '{column}' have {length} values, others "
                                 f"{width}{where}; every item vector must have the same length")
    return width


def check_has_rows(path: str, what: str) -> None:
    """Refuse a raw input with no rows at all. A run over nothing would end as a success that reads
    like a run of nothing (0 users, 0 journeys) and hide a wrong path or glob, or an empty file from
    the job upstream. Reads up to the first row of each file, no more."""
    files = _files(path, what)
    for file in files:
        if io.file_format(file) == "parquet":
            with io.open_input(file) as handle:
                if io.parquet_file(handle).metadata.num_rows:
                    return
            continue
        with contextlib.closing(io.iter_rows(file)) as rows:
            for _ in rows:  # a line that does not parse counts: it is a row, rejected with its reason
                return
    count = f"{len(files)} files, each" if len(files) > 1 else "its one file is"
    raise InputError(f"{what} '{path}' holds no rows ({count} empty): there is nothing to work on; check the "
                     "path, or the job that wrote it")


def check_inputs(events: str, items: str, item_vectors: str | None = None) -> int | None:
    """Events and items (and a separate vectors table); returns the item vectors' length, if any."""
    check_columns(events, schema.EVENT_REQUIRED, "events")
    check_columns(items, schema.ITEM_REQUIRED, "items")
    check_has_rows(events, "events")
    check_has_rows(items, "items")
    if item_vectors:
        if has_column(items, "embedding"):
            raise InputError("the items have an 'embedding' column and --item_vectors is given too: give the "
                             "vectors one way")
        check_columns(item_vectors, ("item_id", "embedding"), "item vectors")
        return check_vectors(item_vectors, "item vectors")
    return check_vectors(items, "items")
