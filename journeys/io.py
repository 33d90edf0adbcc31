"""Reading and writing tables on local paths or ``gs://`` (any fsspec URL), in Parquet, CSV or JSONL.

Readers stream rows as plain dicts so that validation can dead-letter a bad row instead of failing a
whole file; a line that cannot even be parsed is reported as malformed with its text.
"""

from __future__ import annotations

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

_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}

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
    for ext, fmt in _FORMATS.items():
        if path.lower().endswith(ext):
            return fmt
    raise ValueError(
        f"cannot tell the format of '{path}': use a .parquet, .csv or .jsonl file, "
        "or a folder of them"
    )


def list_input_files(path: str) -> list[str]:
    """The data files behind ``path``: the file itself, every data file in a folder, or a glob."""
    fs, stripped = url_to_fs(path)
    if any(ch in stripped for ch in "*?["):
        found = sorted(fs.glob(stripped))
    elif fs.isdir(stripped):
        found = sorted(
            p
            for p in fs.find(stripped)
            if not any(part.startswith((".", "_")) for part in posixpath.relpath(p, stripped).split("/"))
        )
        found = [p for p in found if any(p.lower().endswith(ext) for ext in _FORMATS)]
    elif fs.exists(stripped):
        found = [stripped]
    else:
        raise FileNotFoundError(f"input '{path}' does not exist")
    if not found:
        raise FileNotFoundError(f"input '{path}' holds no .parquet, .csv or .jsonl files")
    return [_with_protocol(fs, p) for p in found]


def read_columns(path: str) -> list[str]:
    """Column names of one data file, reading only its header or first record."""
    fmt = file_format(path)
    fs, stripped = url_to_fs(path)
    with fs.open(stripped, "rb") as handle:
        if fmt == "parquet":
            return list(pq.ParquetFile(handle).schema_arrow.names)
        if fmt == "csv":
            header = handle.readline().decode("utf-8-sig").strip()
            return next(csv.reader([header])) if header else []
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    return list(record)
        return []


def iter_rows(path: str, batch_size: int = 8192) -> Iterator[ParsedRow]:
    """Yield every row of one file, in file order."""
    fmt = file_format(path)
    fs, stripped = url_to_fs(path)
    with fs.open(stripped, "rb") as handle:
        if fmt == "parquet":
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    yield row, None
        elif fmt == "csv":
            header = read_columns(path)
            if header:
                yield from _iter_csv(handle, header)
        else:
            yield from _iter_jsonl(handle)


def _iter_csv(handle, header: list[str]) -> Iterator[ParsedRow]:
    bad: list[str] = []

    def on_invalid(row) -> str:
        bad.append(f"malformed CSV line {row.number}: expected {row.expected_columns} fields, "
                   f"got {row.actual_columns}: {row.text}")
        return "skip"

    # Every column is read as text: types are checked row by row so one bad value rejects one row,
    # not the file.
    reader = pacsv.open_csv(
        handle,
        read_options=pacsv.ReadOptions(block_size=1 << 22),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    for batch in reader:
        for row in batch.to_pylist():
            yield row, None
        while bad:
            yield None, bad.pop(0)
    while bad:
        yield None, bad.pop(0)


def _iter_jsonl(handle) -> Iterator[ParsedRow]:
    for number, raw in enumerate(handle, start=1):
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            yield None, f"malformed JSON line {number}: {err.msg}: {text[:500]}"
            continue
        if not isinstance(record, dict):
            yield None, f"JSON line {number} is not an object: {text[:500]}"
            continue
        yield record, None


def read_table(path: str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file or a folder of Parquet files (as written by our pipelines)."""
    files = [p for p in list_input_files(path) if file_format(p) == "parquet"]
    tables = []
    for file in files:
        fs, stripped = url_to_fs(file)
        with fs.open(stripped, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns))
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")


def _write_atomically(path: str, write) -> None:
    """A reader never sees a half-written file under the final name. On local disks that takes a
    partial file and a rename; an object-store upload only appears once complete, so it is direct."""
    fs, stripped = url_to_fs(path)
    parent = posixpath.dirname(stripped)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    target = stripped
    if _is_local(fs):
        target = f"{parent}/_partial-{uuid.uuid4().hex}-{posixpath.basename(stripped)}"
    with fs.open(target, "wb") as handle:
        write(handle)
    if target != stripped:
        fs.mv(target, stripped)


def write_table(table: pa.Table, path: str) -> None:
    _write_atomically(path, lambda handle: pq.write_table(table, handle, compression="zstd"))


def write_jsonl(table: pa.Table, path: str) -> None:
    """One JSON object per line, columns in schema order; timestamps as ISO-8601 text (UTC)."""
    for field in table.schema:  # what the Parquet writer refuses, so must this one
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"column '{field.name}' is declared non-nullable but contains nulls")
    lines = [json.dumps(row, ensure_ascii=False, default=_json_value) + "\n" for row in table.to_pylist()]
    write_text("".join(lines), path)


def _json_value(value):
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_text(text: str, path: str) -> None:
    _write_atomically(path, lambda handle: handle.write(text.encode("utf-8")))


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
