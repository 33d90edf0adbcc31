"""Size and content hash of every file a step writes, and their check before a step reads them.

A step's ``summary.json`` (an export's ``_manifest.json``) records, for each dataset it wrote, the
size and SHA-256 of every file (``outputs.NAME.sizes`` / ``.sha256``, keyed by the file's path inside
the dataset). Readers compare the files with that record before any work, so a file changed after
its step wrote it (a flipped byte, a truncated or appended-to copy, two shards swapped, a second
writer) is refused by name instead of being read as good data; listing files and counting rows
cannot see a byte that changed.

Why SHA-256, from hashlib: it is in the standard library (nothing to install on workers), its
digest is the one consumers' tools (``sha256sum``, cloud consoles) print, and with the CPU's SHA
instructions OpenSSL hashes about 1.4 GB/s a core (a 1M-event extraction writes a few hundred MB:
see the README's cost figures). A faster non-cryptographic hash (xxHash, CRC32C) would save a
fraction of a second a step at that size and would not tell a deliberate change from a good file.

Files are hashed while they are written (``HashingWriter`` sits between the writer and the file), so
recording costs no second read, which on an object store would be a second download.
"""

from __future__ import annotations

import hashlib

ALGORITHM = "sha256"
CHUNK = 1 << 20

# Which command writes each dataset kind (by schema name): what a refusal tells the user to re-run.
WRITTEN_BY = {"journeys": "journeys extract", "transient": "journeys extract", "users": "journeys extract",
              "lineage": "journeys extract", "history": "journeys extract",
              "catalogue": "journeys extract", "named_journeys": "journeys name", "journey_labels": "journeys export",
              "user_embeddings": "journeys encode"}


class IntegrityError(ValueError):
    """A file that differs from what its step recorded; the message names it and what differs."""


class HashingWriter:
    """A binary handle that hashes and counts every byte written through it. Everything else (tell,
    flush, close, closed, ...) is the wrapped handle's, so a writer cannot tell the difference; the
    Parquet and text writers only ever append."""

    def __init__(self, handle):
        self._handle, self._digest, self.size = handle, hashlib.sha256(), 0

    def write(self, data) -> int:
        view = memoryview(data)
        self._digest.update(view)
        self.size += view.nbytes
        written = self._handle.write(data)
        return view.nbytes if written is None else written

    def fingerprint(self) -> dict:
        return {"size": self.size, ALGORITHM: self._digest.hexdigest()}

    def __getattr__(self, name):
        return getattr(self._handle, name)


def fingerprint_handle(handle) -> dict:
    """Size and hash of what is left to read in a binary handle."""
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, ALGORITHM: digest.hexdigest()}


def record(fingerprints: dict[str, dict]) -> dict:
    """What a summary stores of a dataset's files, given each file's fingerprint by relative path."""
    files = sorted(fingerprints)
    return {"sizes": {f: fingerprints[f]["size"] for f in files},
            ALGORITHM: {f: fingerprints[f][ALGORITHM] for f in files}}


def recorded_fingerprints(recorded: dict) -> dict[str, dict] | None:
    """Each file's recorded fingerprint from a summary's dataset record; None for a record without
    them (written by a release before files were hashed)."""
    sizes, digests = recorded.get("sizes"), recorded.get(ALGORITHM)
    if not isinstance(sizes, dict) or not isinstance(digests, dict):
        return None
    return {f: {"size": sizes.get(f), ALGORITHM: digests.get(f)} for f in recorded.get("files") or []}


def compare(relative: str, expected: dict, size: int, read_fingerprint, others: dict[str, dict]) -> str | None:
    """What differs between one file and its record, in words, or None. The size is compared first: a
    truncated or appended-to file is told without reading it (unless another file was recorded with
    its size: then it is hashed, to tell a swap). ``read_fingerprint()`` hashes the file.
    ``others``: every file's record by relative path, to recognise files swapped or copied over."""
    def same_as(found: str) -> str | None:
        names = sorted(f for f, other in others.items() if other[ALGORITHM] == found and f != relative)
        if names:
            return (f"holds the bytes its step wrote as '{names[0]}' (SHA-256 {found[:12]}...): files swapped or "
                    "copied over each other")
        return None

    if not isinstance(expected["size"], int):
        return f"is {size:,} bytes, and its record's size is not a number ({expected['size']!r})"
    if size != expected["size"]:
        if any(other["size"] == size for f, other in others.items() if f != relative):
            swapped = same_as(read_fingerprint()[ALGORITHM])
            if swapped:
                return swapped
        how = "truncated" if size < expected["size"] else "extended (appended to)"
        return f"is {size:,} bytes, its step wrote {expected['size']:,}: {how}"
    found = read_fingerprint()[ALGORITHM]
    if found == expected[ALGORITHM]:
        return None
    return same_as(found) or (
        f"does not hold the bytes its step wrote: SHA-256 {found[:12]}..., recorded {expected[ALGORITHM][:12]}... "
        "(same size: changed in place, e.g. a damaged copy or a second writer)")
