"""Writing a UQABench-style question set: ``journeys uqabench build``.

The format and how the questions are made are in ``journeys.uqa_questions``; this module reads
the inputs, builds the questions, checks journeys against the cut and writes the files (questions,
history, dead letters, the practice questions when asked for and, last, the manifest with input
fingerprints).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict
from importlib import metadata

import pyarrow as pa

from journeys import io, schema
from journeys.inputs import InputError
from journeys.uqa_questions import (
    DIMENSIONS,
    FORMAT_VERSION,
    LETTERS,
    PRACTICE_FILE,
    SUBTASKS,
    BuildConfig,
    Cut,
    build_questions,
    iso_time,
    practice_questions,
    read_inputs,
)
from journeys.validation import parse_timestamp

MANIFEST = "_manifest.json"


def _fingerprints(path: str) -> list[dict]:
    from pipelines.export import fingerprint

    return [fingerprint(file, path) for file in io.list_input_files(path)]


def check_journeys(journeys_path: str, cuts: list[Cut]) -> dict:
    """Refuse journeys that reach past a user's history cut: they were extracted from held-out
    interactions, so an encoder built on them would see the answers."""
    table = io.read_table(journeys_path, columns=["user_id", "journey_id", "last_ts"])
    schema.check_version(table.schema, "journeys", journeys_path)
    last_seen = {cut.user_id: cut.history[-1].ts for cut in cuts}
    leaks, users = [], set()
    for user_id, journey_id, last_ts in zip(*(table[c].to_pylist() for c in ("user_id", "journey_id", "last_ts"))):
        if user_id not in last_seen:
            continue
        users.add(user_id)
        if parse_timestamp(last_ts) > last_seen[user_id]:
            leaks.append((user_id, journey_id, last_ts))
    if leaks:
        user_id, journey_id, last_ts = sorted(leaks)[0]
        raise InputError(
            f"{len(leaks)} journeys reach past their user's history cut (e.g. {journey_id} of user {user_id} "
            f"ends {last_ts.isoformat()}, after {iso_time(last_seen[user_id])}): they hold held-out interactions. "
            "Extract the journeys from the question set's history.parquet instead.")
    return {"journeys": table.num_rows, "question_users_with_journeys": len(users),
            "question_users_without_journeys": len(last_seen) - len(users), "past_the_cut": 0}


def _history_table(cuts: list[Cut]) -> pa.Table:
    events = [e for cut in cuts for e in cut.history]
    return pa.table({
        "user_id": [e.user_id for e in events], "item_id": [e.item_id for e in events],
        "timestamp": pa.array([e.ts for e in events], type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "weight": pa.array([e.weight for e in events], type=pa.float32()),
        "event_type": [e.event_type for e in events],
    }, schema=schema.EVENTS)


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _tool_version() -> str:
    try:
        return metadata.version("journeys")
    except metadata.PackageNotFoundError:
        return "unknown"


def build(events_path: str, items_path: str, out: str, config: BuildConfig | None = None,
          journeys_path: str | None = None) -> dict:
    """Read, build, check, write ``OUT/questions.jsonl``, ``history.parquet``, ``dead_letter.jsonl``
    and, last, ``_manifest.json``; return the manifest. Nothing is written when an input is wrong."""
    config = config or BuildConfig()
    inputs = read_inputs(events_path, items_path)
    result = build_questions(inputs.events, inputs.items, config)
    journeys_check = check_journeys(journeys_path, result.cuts) if journeys_path else None
    fingerprints = {"events": _fingerprints(events_path), "items": _fingerprints(items_path)}
    if journeys_path:
        fingerprints["journeys"] = _fingerprints(journeys_path)
    dead = sorted((d.to_record() for d in inputs.dead),
                  key=lambda r: tuple(r[k] or "" for k in ("source", "reason", "user_id", "item_id", "row")))
    config_dict = asdict(config)
    questions = result.questions
    practice = practice_questions(result.cuts, inputs.items, config)
    files = {"questions": "questions.jsonl", "history": "history.parquet", "dead_letter": "dead_letter.jsonl"}
    if config.practice:
        files["practice"] = PRACTICE_FILE
    manifest = {
        "format": {"name": "uqabench-questions", "version": FORMAT_VERSION},
        "files": files,
        "questions": len(questions),
        "practice_questions": len(practice),
        "subtasks": {s: sum(q["subtask"] == s for q in questions) for s in SUBTASKS},
        "dimensions": {d: sum(q["dimension"] == d for q in questions) for d in DIMENSIONS},
        "gold_letters": {letter: sum(q["answer"] == letter for q in questions) for letter in LETTERS},
        "users": {"with_events": len({e.user_id for e in inputs.events}), "with_questions": len(result.cuts),
                  "skipped": dict(sorted(result.users_skipped.items()))},
        "questions_skipped": {s: dict(sorted(c.items())) for s, c in result.questions_skipped.items() if c},
        "rows": {**dict(sorted(inputs.rows.items())), "events_used": len(inputs.events),
                 "items_used": len(inputs.items),
                 "rejected": dict(sorted(Counter(r["reason"] for r in dead).items()))},
        "history_events": sum(len(c.history) for c in result.cuts),
        "journeys_check": journeys_check,
        "config": config_dict,
        "config_sha256": hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest(),
        "input": fingerprints,
        "tool": {"name": "journeys", "version": _tool_version()},
    }
    io.remove(io.join(out, MANIFEST))  # no manifest beside a mix of old and new files
    io.write_text(_jsonl(questions), io.join(out, "questions.jsonl"))
    io.write_table(_history_table(result.cuts), io.join(out, "history.parquet"))
    io.write_text(_jsonl(dead), io.join(out, "dead_letter.jsonl"))
    if config.practice:
        io.write_text(_jsonl(practice), io.join(out, PRACTICE_FILE))
    else:
        io.remove(io.join(out, PRACTICE_FILE))  # a rebuild without practice leaves no stale practice set
    io.write_text(json.dumps(manifest, indent=2) + "\n", io.join(out, MANIFEST))
    return manifest
