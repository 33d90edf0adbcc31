"""``journeys verify FOLDER``: check an export (or any finished step's output) against its record.

A consumer that copied an export (a bucket sync, a download) checks with one command that every
file is what the export wrote: the manifest (``_manifest.json``; a step's ``summary.json``) records
each dataset's files, rows and each file's size and SHA-256. Every difference is reported, one line
each, not only the first: whoever copied the folder learns at once how much to fetch again.
"""

from __future__ import annotations

import json
import posixpath

from journeys import integrity, io
from journeys.inputs import SUMMARY, InputError, compare_files, count_rows, relative_paths

MANIFEST = "_manifest.json"
RUN_PARTS = ("extract", "named", "export")  # what `journeys run --out` holds


def markers(folder: str) -> list[str]:
    """The record files to verify in ``folder``: its manifest or summary, or those of a run folder's
    steps; an InputError when there is none."""
    fs, stripped = io.url_to_fs(folder)
    if not fs.isdir(stripped):
        raise InputError(f"'{folder}' is not a folder: pass an export folder (with {MANIFEST}) or a step's output "
                         f"folder (with {SUMMARY})")
    for marker in (MANIFEST, SUMMARY):
        if fs.exists(f"{stripped.rstrip('/')}/{marker}"):
            return [io.join(folder, marker)]
    found = [io.join(folder, part, marker) for part in RUN_PARTS for marker in (MANIFEST, SUMMARY)
             if fs.exists(f"{stripped.rstrip('/')}/{part}/{marker}")]
    if not found:
        raise InputError(f"'{folder}' holds no {MANIFEST} or {SUMMARY}: it is not a finished export or step output "
                         "(a run that was stopped leaves none), so there is nothing to verify it against")
    return found


def verify_dataset(folder: str, recorded: dict) -> tuple[dict, list[str]]:
    """One dataset against its record: (what was checked, the differences as lines naming the file)."""
    fs, stripped = io.url_to_fs(folder)
    if not fs.isdir(stripped):
        return {"files": 0}, [f"{folder}: missing (the record lists {len(recorded.get('files') or [])} files)"]
    try:
        files = io.list_input_files(folder)
    except FileNotFoundError:
        files = []
    relative = relative_paths(files, folder)
    expected = integrity.recorded_fingerprints(recorded)
    if expected is None:
        return {"files": len(files)}, [f"{folder}: the record holds no sizes and SHA-256 hashes (an older release): "
                                       "nothing to verify the files against"]
    problems = [f"{io.join(folder, rel)}: missing" for rel in sorted(set(expected) - set(relative))]
    problems += [f"{io.join(folder, rel)}: not written by the step (not in the record)"
                 for rel in sorted(set(relative) - set(expected))]
    known = [(f, r) for f, r in zip(files, relative) if r in expected]
    size = 0
    for file, _rel, difference, _fingerprint in compare_files([f for f, _ in known], [r for _, r in known], expected):
        if difference:
            problems.append(f"{file}: {difference}")
        size += fs.size(io.url_to_fs(file)[1])
    checked = {"files": len(known), "bytes": size}
    if not problems:
        checked["rows"] = sum(count_rows(file) for file, _ in known)
        if checked["rows"] != recorded.get("rows"):
            problems.append(f"{folder}: holds {checked['rows']} rows, the record says {recorded.get('rows')}")
    return checked, problems


def verify(folder: str) -> dict:
    """Every dataset recorded in ``folder``'s manifest or summary (or its run's steps'), checked:
    ``{"folder", "ok", "datasets": {path: {files, bytes, rows}}, "problems": [lines]}``."""
    report = {"folder": folder, "ok": True, "datasets": {}, "problems": []}
    for marker in markers(folder):
        fs, stripped = io.url_to_fs(marker)
        try:
            with fs.open(stripped, "r", encoding="utf-8") as handle:
                outputs = json.load(handle).get("outputs")
        except (ValueError, AttributeError):
            outputs = None
        if not isinstance(outputs, dict) or not outputs:
            report["problems"].append(f"{marker}: records no datasets (an older release, or not a journeys record)")
            continue
        base = posixpath.dirname(marker)
        for name, recorded in sorted(outputs.items()):
            dataset = io.join(base, name)
            checked, problems = verify_dataset(dataset, recorded if isinstance(recorded, dict) else {})
            report["datasets"][dataset] = checked
            report["problems"] += problems
    report["ok"] = not report["problems"]
    return report
