"""Hand-made step outputs for tests: a dataset folder with the summary.json a step writes beside it,
so that the next step's input check (journeys.inputs.check_complete) accepts it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from journeys import io
from journeys.inputs import describe_dataset


def write_step_output(table: pa.Table, folder: Path, file: str = "part-00000.parquet") -> str:
    """Write ``table`` as ``folder/file`` and record it in ``folder/../summary.json``; returns the folder."""
    io.write_table(table, str(folder / file))
    summary_path = folder.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.setdefault("outputs", {})[folder.name] = describe_dataset(str(folder))
    summary_path.write_text(json.dumps(summary))
    return str(folder)
