"""Up-front checks of input files, so that a wrong file fails in a second with a clear message."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from journeys import io, schema

_CHECK_AT_MOST = 20  # files whose header is read before the run; the rest are checked row by row


class InputError(ValueError):
    """An input the user must fix; the message says what and where."""


def check_columns(path: str, required: tuple[str, ...], what: str) -> None:
    try:
        files = io.list_input_files(path)
    except FileNotFoundError as err:
        raise InputError(f"{what}: {err}") from None
    for file in files[:_CHECK_AT_MOST]:
        try:
            columns = io.read_columns(file)
        except ValueError as err:
            raise InputError(f"{what}: {err}") from None
        except Exception as err:  # an unreadable file: say which one
            raise InputError(f"{what} file '{file}' cannot be read: {err}") from None
        if not columns:
            continue  # an empty file holds no rows; nothing is lost
        missing = [c for c in required if c not in columns]
        if missing:
            raise InputError(
                f"{what} file '{file}' has no column {', '.join(repr(m) for m in missing)} "
                f"(it has: {', '.join(columns) or 'no columns'}); required: {', '.join(required)}"
            )


def check_dataset(path: str, expected: pa.Schema, what: str, hint: str) -> list[str]:
    """The files of a Parquet dataset one of our steps wrote, or an InputError naming what is wrong:
    a missing folder, a file that is not Parquet or cannot be read, another schema or version, a
    missing column. ``hint`` says which folder to pass (e.g. "pass the named/ folder written by
    `journeys name`")."""
    name = expected.metadata[b"journeys.schema"].decode()
    try:
        files = io.list_input_files(path)
    except FileNotFoundError as err:
        raise InputError(f"{what}: {err}") from None
    for file in files:
        if io.file_format(file) != "parquet":
            raise InputError(f"{what}: '{file}' is not Parquet; {hint}")
        fs, stripped = io.url_to_fs(file)
        try:
            with fs.open(stripped, "rb") as handle:
                found = pq.ParquetFile(handle).schema_arrow
        except Exception as err:  # an unreadable file: say which one
            raise InputError(f"{what} file '{file}' cannot be read: {err}") from None
        try:
            schema.check_version(found, name, file)
        except ValueError as err:
            raise InputError(f"{err} ({hint})") from None
        missing = [c for c in expected.names if c not in found.names]
        if missing:
            raise InputError(f"{what} file '{file}' has no column {', '.join(map(repr, missing))}")
    return files


def check_inputs(events: str, items: str) -> None:
    check_columns(events, schema.EVENT_REQUIRED, "events")
    check_columns(items, schema.ITEM_REQUIRED, "items")
