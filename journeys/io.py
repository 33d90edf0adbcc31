"""Reading and writing tables on local paths or ``gs://`` (any fsspec URL), in Parquet, CSV or JSONL.

Readers stream rows as plain dicts so that validation can dead-letter a bad row instead of failing a
whole file; a line that cannot even be parsed (or holds text that is not UTF-8) is reported as
malformed with its file, line or row number and text. CSV and JSON Lines may be gzip-compressed
(``.csv.gz``, ``.jsonl.gz``); a ``.json`` file may hold one JSON array of objects, or JSON Lines.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import posixpath
import uuid
from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from journeys.integrity import HashingWriter

_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".ndjson.gz": "jsonl",
    ".json": "json",
    ".json.gz": "json",
}
# Compressions we do not read: a file in one is refused by name rather than skipped.
_UNREAD_COMPRESSIONS = (".bz2", ".xz", ".zst", ".zip", ".lz4", ".snappy", ".7z", ".tar", ".tgz")

# How every Parquet file is written: with a CRC32 checksum in each page header, so that a damaged
# page is caught by the format itself, in any copy of the file and by any reader that verifies
# (ours always do: ``parquet_file``), not only against our summaries.
PARQUET_WRITE = {"compression": "zstd", "write_page_checksum": True}

# A row that could not be parsed at all: (None, "why: raw text"). A parsed row: (dict, None).
ParsedRow = tuple[dict | None, str | None]


def url_to_fs(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, stripped = fsspec.core.url_to_fs(path)
    return fs, stripped


def _with_protocol(fs: fsspec.AbstractFileSystem, path: str) -> str:
    return fs.unstrip_protocol(path) if not _is_local(fs) else path


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def file_format(path: str) -> str:
    """parquet, csv, jsonl or json (a JSON array, or JSON Lines), from the file's name."""
    lower = path.lower()
    if lower.endswith((".parquet.gz", ".pq.gz")):
        raise ValueError(f"'{path}' is a gzip-compressed Parquet file: Parquet compresses itself, so "
                         "decompress it (gunzip) and pass the .parquet file")
    for ext, fmt in sorted(_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if lower.endswith(ext):
            return fmt
    if lower.endswith(_UNREAD_COMPRESSIONS):
        raise ValueError(f"'{path}' is compressed in a way this tool does not read: decompress it, or "
                         "gzip it (.csv.gz and .jsonl.gz are read)")
    raise ValueError(
        f"cannot tell the format of '{path}': use a .parquet, .csv or .jsonl file (.csv.gz and "
        ".jsonl.gz too), or a folder of them"
    )


def _compression(path: str) -> str | None:
    return "gzip" if path.lower().endswith(".gz") else None


def list_input_files(path: str) -> list[str]:
    """The data files behind ``path``: the file itself, every file in a folder (but hidden ones and
    ones whose name starts with ``_``, such as markers), or a glob. A folder's files are not filtered
    by name: a file this tool cannot read is refused by the input checks, not skipped."""
    fs, stripped = url_to_fs(path)
    if any(ch in stripped for ch in "*?["):
        found = sorted(p for p in fs.glob(stripped) if not fs.isdir(p))
    elif fs.isdir(stripped):
        found = sorted(
            p
            for p in fs.find(stripped)
            if not any(part.startswith((".", "_")) for part in posixpath.relpath(p, stripped).split("/"))
        )
    elif fs.exists(stripped):
        found = [stripped]
    else:
        raise FileNotFoundError(f"input '{path}' does not exist")
    if not found:
        raise FileNotFoundError(f"input '{path}' holds no .parquet, .csv or .jsonl files")
    return [_with_protocol(fs, p) for p in found]


def parquet_file(handle) -> pq.ParquetFile:
    """A Parquet file whose pages are checked against their checksums as they are read (a page
    without one, as other writers leave them, is read as before)."""
    return pq.ParquetFile(handle, page_checksum_verification=True)


def open_input(path: str):
    """A binary handle on one input file, decompressing ``.gz`` files as they are read."""
    fs, stripped = url_to_fs(path)
    return fs.open(stripped, "rb", compression=_compression(path))


def read_columns(path: str) -> list[str]:
    """Column names of one data file, reading only its header or first record (a JSON array is
    parsed whole). Raises ValueError for a header that is not UTF-8 or a JSON file that does not parse."""
    fmt = file_format(path)
    with open_input(path) as handle:
        if fmt == "parquet":
            return list(parquet_file(handle).schema_arrow.names)
        if fmt == "csv":
            raw = handle.readline()
            try:
                header = raw.decode("utf-8-sig").strip()
            except UnicodeDecodeError as err:
                raise ValueError(f"the header line of '{path}' is not UTF-8 text ({err.reason} at byte "
                                 f"{err.start}): save the file as UTF-8") from None
            return next(csv.reader([header])) if header else []
        if fmt == "json" and _starts_with_bracket(handle):
            for record, _problem, _number in _iter_json_array(handle, path):
                if record is not None:
                    return list(record)
            return []
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(record, dict):
                    return list(record)
        return []


def iter_rows(path: str, batch_size: int = 8192) -> Iterator[ParsedRow]:
    """Yield every row of one file, in file order."""
    for row, problem, _number in iter_numbered_rows(path, batch_size):
        yield row, problem


def iter_numbered_rows(path: str, batch_size: int = 8192) -> Iterator[tuple[dict | None, str | None, int]]:
    """Every row of one file as ``(row, problem, number)``: ``number`` is the line (JSON Lines), the
    row counted from 1 after the header (CSV, Parquet) or the element (a JSON array). A problem
    names the file and that number."""
    fmt = file_format(path)
    with open_input(path) as handle:
        if fmt == "parquet":
            number = 0
            for batch in parquet_file(handle).iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    number += 1
                    yield row, None, number
        elif fmt == "csv":
            header = read_columns(path)
            if header:
                handle.readline()  # past the header, which read_columns read through its own handle
                yield from _iter_csv(handle, header, path)
        elif fmt == "json" and _starts_with_bracket(handle):
            yield from _iter_json_array(handle, path)
        else:
            yield from _iter_jsonl(handle, path)


def _starts_with_bracket(handle) -> bool:
    """Whether a JSON file holds one array (``[`` first), leaving the handle at its start."""
    start = handle.read(4096)
    handle.seek(0)
    return start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def _iter_json_array(handle, path: str) -> Iterator[tuple[dict | None, str | None, int]]:
    """The elements of a file that holds one JSON array. The file is parsed whole: a file that does
    not parse is refused (it cannot be split into rows); an element that is not an object is a row
    problem."""
    try:
        records = json.loads(handle.read().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ValueError(f"'{path}' is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8, "
                         "or as JSON Lines so that one bad line costs one row") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"'{path}' starts a JSON array but does not parse ({err.msg} at line {err.lineno}): "
                         "fix it, or write one JSON object per line (JSON Lines)") from None
    if not isinstance(records, list):  # e.g. "[1] x": cannot happen after a clean parse, kept for safety
        raise ValueError(f"'{path}' does not hold a JSON array")
    for number, record in enumerate(records, start=1):
        if isinstance(record, dict):
            yield record, None, number
        else:
            yield None, f"{path} element {number} is not a JSON object: {json.dumps(record)[:500]}", number


def _iter_csv(handle, header: list[str], path: str) -> Iterator[tuple[dict | None, str | None, int]]:
    bad: list[tuple[str, int]] = []

    def on_invalid(row) -> str:
        # Line numbers are unknown while values may hold newlines (pyarrow gives None then).
        where = f"line {row.number + 1}" if row.number is not None else "a line"
        bad.append((f"{path} {where}: malformed CSV line: expected {row.expected_columns} fields, "
                    f"got {row.actual_columns}: {row.text}", row.number + 1 if row.number is not None else 0))
        return "skip"

    # Every column is read as bytes and decoded here, row by row, so that one value that is not
    # UTF-8 costs its row, not the file; types are checked later, row by row, for the same reason.
    # The header was read already: column names are given, so no header line is expected.
    try:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=1 << 22, column_names=header),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.binary() for name in header}, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as err:
        if "Empty CSV" in str(err):
            return  # a header and no rows
        raise
    number = 0
    for batch in reader:
        try:  # the whole batch as text at once (fast), when it is all UTF-8
            rows = pa.RecordBatch.from_arrays([c.cast(pa.string()) for c in batch.columns],
                                              names=batch.schema.names).to_pylist()
        except pa.ArrowInvalid:
            rows = None
        for raw in rows if rows is not None else batch.to_pylist():
            number += 1
            row, problem = (raw, None) if rows is not None else _decode_row(raw, path, number)
            yield row, problem, number
        while bad:
            problem, line = bad.pop(0)
            yield None, problem, line
    while bad:
        problem, line = bad.pop(0)
        yield None, problem, line


def _decode_row(raw: dict, path: str, number: int) -> tuple[dict | None, str | None]:
    row = {}
    for name, value in raw.items():
        if value is None:
            row[name] = None
            continue
        try:
            row[name] = value.decode("utf-8")
        except UnicodeDecodeError as err:
            shown = value.decode("utf-8", errors="backslashreplace")[:200]
            return None, (f"{path} row {number}: column '{name}' is not UTF-8 text ({err.reason} at byte "
                          f"{err.start}): {shown}")
    return row, None


def _iter_jsonl(handle, path: str) -> Iterator[tuple[dict | None, str | None, int]]:
    for number, raw in enumerate(handle, start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError as err:
            shown = raw.decode("utf-8", errors="backslashreplace").strip()[:500]
            yield None, f"{path} line {number}: not UTF-8 text ({err.reason} at byte {err.start}): {shown}", number
            continue
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            yield None, f"{path} line {number}: malformed JSON line: {err.msg}: {text[:500]}", number
            continue
        if not isinstance(record, dict):
            yield None, f"{path} line {number}: JSON line is not an object: {text[:500]}", number
            continue
        yield record, None, number


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file or a folder of Parquet files (as written by our pipelines)."""
    files = [p for p in list_input_files(path) if file_format(p) == "parquet"]
    tables = []
    for file in files:
        fs, stripped = url_to_fs(file)
        with fs.open(stripped, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns, page_checksum_verification=True))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


@contextlib.contextmanager
def _atomic_handle(path: str):
    """A binary handle to write ``path`` through, such that a reader never sees a half-written file
    under the final name. On local disks that takes a partial file and a rename; an object-store
    upload only appears once complete, so it is direct. The handle hashes what goes through it
    (``HashingWriter.fingerprint()``): what the step records of the file, without reading it again."""
    fs, stripped = url_to_fs(path)
    parent = posixpath.dirname(stripped)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    target = stripped
    if _is_local(fs):
        target = f"{parent}/_partial-{uuid.uuid4().hex}-{posixpath.basename(stripped)}"
    with fs.open(target, "wb") as handle:
        yield HashingWriter(handle)
    if target != stripped:
        fs.mv(target, stripped)


def _write_atomically(path: str, write) -> dict:
    """Write ``path`` through ``write(handle)``; returns ``{"path", "size", "sha256"}`` of what was written."""
    with _atomic_handle(path) as handle:
        write(handle)
    return {"path": path, **handle.fingerprint()}


def write_table(table: pa.Table, path: str) -> dict:
    return _write_atomically(path, lambda handle: pq.write_table(table, handle, **PARQUET_WRITE))


class ParquetRows:
    """Write rows (dicts) into one Parquet file as they come, holding at most ``rows_per_group``
    of them: each full batch becomes a row group. Written as ``write_table`` writes (one row group
    for a small file: the same bytes) and published atomically when closed without an error; no
    file at all if no row came. Once closed, ``written`` is the file's ``{"path", "size", "sha256"}``
    (None without a file)."""

    def __init__(self, path: str, schema: pa.Schema, rows_per_group: int = 20_000):
        self.path, self.schema, self.rows_per_group = path, schema, rows_per_group
        self._pending: list[dict] = []
        self._handle = self._writer = self._hashing = None
        self.rows = 0
        self.written: dict | None = None

    def add(self, rows: list[dict]) -> None:
        self._pending.extend(rows)
        self.rows += len(rows)
        if len(self._pending) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._writer is None:
            self._handle = _atomic_handle(self.path)
            self._hashing = self._handle.__enter__()
            self._writer = pq.ParquetWriter(self._hashing, self.schema, **PARQUET_WRITE)
        self._writer.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
        self._pending = []

    def __enter__(self) -> ParquetRows:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None and self._pending:
            self._flush()
        if self._writer is not None:
            self._writer.close()
            self._handle.__exit__(kind, error, trace)  # renames into place only without an error
            if kind is None:
                self.written = {"path": self.path, **self._hashing.fingerprint()}


def write_jsonl(table: pa.Table, path: str) -> dict:
    """One JSON object per line, columns in schema order; timestamps as ISO-8601 text (UTC)."""
    for field in table.schema:  # what the Parquet writer refuses, so must this one
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"column '{field.name}' is declared non-nullable but contains nulls")
    lines = [json.dumps(row, ensure_ascii=False, default=_json_value) + "\n" for row in table.to_pylist()]
    return write_text("".join(lines), path)


def _json_value(value):
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_text(text: str, path: str) -> dict:
    return _write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


def move_folder(source: str, target: str) -> None:
    """Replace ``target`` with ``source``: a rename on local disks, copy then delete on object stores
    (which have no folders to rename)."""
    fs, src = url_to_fs(source)
    _, dst = url_to_fs(target)
    if fs.exists(dst):
        fs.rm(dst, recursive=True)
    if _is_local(fs):
        fs.mv(src, dst, recursive=True)
    else:
        fs.copy(src, dst, recursive=True)
        fs.rm(src, recursive=True)


def remove(path: str) -> None:
    fs, stripped = url_to_fs(path)
    if fs.exists(stripped):
        fs.rm(stripped, recursive=True)


def join(base: str, *parts: str) -> str:
    """Join URL or local path parts with '/' (os.path.join would break gs:// on Windows)."""
    return "/".join([base.rstrip("/"), *parts])
