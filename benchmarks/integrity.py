"""What hashing and verifying every dataset costs each step, as a share of the step's time.

Each step hashes (SHA-256) every file as it writes it and writes Parquet with page checksums; each
reader of a step's folder verifies every file's size and hash before any work and reads Parquet
with page-checksum verification. On the synthetic sample scaled to ``--events`` (as
``benchmarks/extract.py`` makes it, reused from ``--workdir``), this runs, in this process, one
after the other, with imports done before the clock:

- ``extract`` on the sample (no embedding cache: as the README's Speed table);
- ``encode`` (journey encoder) and ``report`` on the extraction's journeys, and ``export`` on a
  named/ dataset made from them (the keyword namer would take over an hour at this size on two
  cores: every journey gets names embedded, about 0.1 s each, so the names here are the first
  salient term; the bytes and rows are a named dataset's);
- ``name`` on the journeys of the first users (``--name_journeys``), whose share is the share at
  full size: both the namer's work and the verification grow with the journeys.

Per step it measures, separately: the up-front check of its inputs (``verify_s``: reading and
hashing every byte, with the footers and schemas checked as before), the cost of hashing and page
checksums while writing its outputs (``write_s``: each output dataset written to memory the way
the step writes it, less the same write with neither, median of 3), and of page-checksum
verification while reading its inputs (``read_crc_s``: each input read whole with and without,
median of 3). ``share`` = (verify_s + write_s + read_crc_s) / step_s. Results go to ``--json`` as
they come.

    python benchmarks/integrity.py --events 1000000 --workdir W --json results.json
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import io as bytes_io
import json
import logging
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_seconds(work, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def write_overhead(folder: Path) -> dict:
    """Seconds that hashing and page checksums add to writing every file of a dataset (to memory,
    so the disk is not timed): each file written as the steps write it, less the plain write."""
    import pyarrow.parquet as pq

    from journeys.integrity import HashingWriter
    from journeys.io import PARQUET_WRITE

    tables = [pq.read_table(path) for path in sorted(folder.glob("*.parquet"))]

    def ours():
        for table in tables:
            pq.write_table(table, HashingWriter(bytes_io.BytesIO()), **PARQUET_WRITE)

    def plain():
        for table in tables:
            pq.write_table(table, bytes_io.BytesIO(), compression="zstd")

    with_both, without = median_seconds(ours), median_seconds(plain)
    return {"bytes": sum(p.stat().st_size for p in folder.glob("*.parquet")), "with_s": round(with_both, 3),
            "plain_s": round(without, 3), "overhead_s": round(with_both - without, 3)}


def read_overhead(folder_or_file: Path) -> dict:
    """Seconds that page-checksum verification adds to reading every file whole."""
    import pyarrow.parquet as pq

    files = sorted(folder_or_file.glob("*.parquet")) if folder_or_file.is_dir() else [folder_or_file]

    def read(verify: bool):
        for path in files:
            pq.ParquetFile(path, page_checksum_verification=verify).read()

    with_crc, without = median_seconds(lambda: read(True)), median_seconds(lambda: read(False))
    return {"with_s": round(with_crc, 3), "plain_s": round(without, 3), "overhead_s": round(with_crc - without, 3)}


def timed(work) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def check_seconds(path: Path, expected, what: str) -> float:
    """The up-front check a reader makes (files, sizes, hashes, rows, footers); median of 3."""
    from journeys.inputs import check_dataset

    return median_seconds(lambda: check_dataset(str(path), expected, what, "benchmark"))


def make_named(journeys: Path, named_out: Path) -> None:
    """A named/ dataset from the journeys (a name per journey from its first salient term), written
    and recorded as the name step writes and records one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from journeys import io, schema
    from journeys.inputs import describe_dataset

    folder = named_out / "named"
    fingerprints = {}
    for path in sorted(journeys.glob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            terms = row["salient_terms"] or [{"term": "journey"}]
            row.update(name=terms[0]["term"], naming_strategy="keywords", naming_model=None, adapter=None,
                       template_version=None, grounding=0.5, fell_back=False, fallback_reason=None, status="new",
                       naming_decision="named", naming_reason="no previous run")
        written = io.write_table(pa.Table.from_pylist(rows, schema=schema.NAMED_JOURNEYS), str(folder / path.name))
        fingerprints[path.name] = written
    summary = {"schema_version": schema.SCHEMA_VERSION, "outputs": {"named": describe_dataset(str(folder),
                                                                                              fingerprints)}}
    (named_out / "summary.json").write_text(json.dumps(summary))


def journeys_subset(journeys: Path, out: Path, at_least: int) -> int:
    """The journeys of the first users (in id order) with at least ``at_least`` journeys among them,
    as a step output of their own (written and recorded as a step writes and records one)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from journeys import io, schema
    from journeys.inputs import describe_dataset

    table = pq.read_table(sorted(journeys.glob("*.parquet"))[0]).sort_by("user_id")
    last_user = table["user_id"][min(at_least, table.num_rows) - 1]
    table = table.filter(pc.less_equal(table["user_id"], last_user)).cast(schema.JOURNEYS)
    written = io.write_table(table, str(out / "journeys" / "part-00000.parquet"))
    described = describe_dataset(str(out / "journeys"), {"part-00000.parquet": written})
    (out / "summary.json").write_text(json.dumps({"outputs": {"journeys": described}}))
    return table.num_rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="approximate events (default 1000000)")
    parser.add_argument("--workdir", required=True, help="folder for the sample and the outputs (kept)")
    parser.add_argument("--json", required=True, help="write the results here, as they come")
    parser.add_argument("--name_journeys", type=int, default=300, help="journeys the name step is timed on (300)")
    parser.add_argument("--steps", default="extract,encode,export,report,name", help="steps to time")
    args = parser.parse_args(argv)

    from journeys import logs

    logs.configure()
    logging.getLogger("pipelines").setLevel(logging.WARNING)
    logging.getLogger("journeys").setLevel(logging.WARNING)
    import sentence_transformers  # noqa: F401  (imported before any clock starts)
    from extract import prepared  # benchmarks/extract.py: the same sample as the Speed table

    from journeys import cli, schema
    from pipelines import encode, export, extract, name

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = {"machine": {"python": platform.python_version(), "cores": os.cpu_count()}, "steps": {}}

    def save():
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")

    sample = prepared(args.events, 0, work / f"sample-{args.events}")
    results["sample"] = {k: sample[k] for k in ("events", "users", "items")}
    save()
    steps = args.steps.split(",")
    out = work / "extract"
    if "extract" in steps or not (out / "summary.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        seconds, summary = timed(lambda: extract.run(["--events", sample["events_path"], "--items",
                                                      sample["items_path"], "--out", str(out)],
                                                     save_main_session=False))
        written = {d: write_overhead(out / d) for d in ("journeys", "transient", "users", "lineage", "dead_letter")}
        read = {kind: read_overhead(Path(sample[f"{kind}_path"])) for kind in ("events", "items")}
        write_s = sum(w["overhead_s"] for w in written.values())
        read_s = sum(r["overhead_s"] for r in read.values())
        results["steps"]["extract"] = {
            "step_s": round(seconds, 2), "journeys": summary["journeys"], "verify_s": 0.0,
            "write_s": round(write_s, 3), "read_crc_s": round(read_s, 3), "written": written, "read": read,
            "share": round((write_s + read_s) / seconds, 4)}
        save()
    journeys = out / "journeys"
    verify_journeys = check_seconds(journeys, schema.JOURNEYS, "journeys")
    journeys_read = read_overhead(journeys)

    def record(step: str, seconds: float, verify_s: float, outputs: list[Path], read: dict, **extra):
        written = {p.name: write_overhead(p) for p in outputs}
        write_s = sum(w["overhead_s"] for w in written.values())
        results["steps"][step] = {
            "step_s": round(seconds, 2), "verify_s": round(verify_s, 3), "write_s": round(write_s, 3),
            "read_crc_s": read["overhead_s"], "written": written, "read": read, **extra,
            "share": round((verify_s + write_s + read["overhead_s"]) / seconds, 4)}
        save()

    if "encode" in steps:
        target = work / "encode"
        shutil.rmtree(target, ignore_errors=True)
        seconds, _ = timed(lambda: encode.run(["--journeys", str(journeys), "--out", str(target)],
                                              save_main_session=False))
        record("encode", seconds, verify_journeys, [target / "embeddings"], journeys_read)
    named = work / "named"
    if "export" in steps or "report" in steps:
        shutil.rmtree(named, ignore_errors=True)
        make_named(journeys, named)
        verify_named = check_seconds(named / "named", schema.NAMED_JOURNEYS, "named journeys")
        named_read = read_overhead(named / "named")
    if "export" in steps:
        target = work / "export"
        shutil.rmtree(target, ignore_errors=True)
        seconds, _ = timed(lambda: export.run(["--named", str(named / "named"), "--out", str(target)],
                                              save_main_session=False))
        record("export", seconds, verify_named, [target / "journey_labels"], named_read)
    if "report" in steps:
        page = work / "report.html"
        seconds, code = timed(lambda: cli.main(["report", "--named", str(named / "named"), "--out", str(page)]))
        assert code == 0
        record("report", seconds, verify_named, [], named_read)
    if "name" in steps:
        subset = work / "name-subset"
        shutil.rmtree(subset, ignore_errors=True)
        rows = journeys_subset(journeys, subset, args.name_journeys)
        target = work / "named-subset"
        shutil.rmtree(target, ignore_errors=True)
        seconds, _ = timed(lambda: name.run(["--journeys", str(subset / "journeys"), "--out", str(target)],
                                            save_main_session=False))
        record("name", seconds, check_seconds(subset / "journeys", schema.JOURNEYS, "journeys"),
               [target / "named"], read_overhead(subset / "journeys"), journeys=rows,
               full_size={"journeys": results["steps"].get("extract", {}).get("journeys"),
                          "verify_s": round(verify_journeys, 3)})
    print(json.dumps(results["steps"], indent=1))


if __name__ == "__main__":
    main()
