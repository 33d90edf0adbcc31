"""The UQABench-style question set: determinism, the history cut, right answers, no answer in the text."""

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from eval.uqabench.questions import build
from journeys import cli, io, schema
from journeys.inputs import InputError
from journeys.model import Item
from journeys.sample.generator import SampleConfig, generate
from journeys.uqa_questions import LETTERS, SUBTASKS, BuildConfig, interests_of, read_questions
from journeys.uqa_scoring import accuracy
from journeys.validation import parse_timestamp


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> dict:
    """160 users: enough questions per sub-task for the balance and baseline bounds below."""
    folder = tmp_path_factory.mktemp("uqa-sample")
    data = generate(SampleConfig(users=160, seed=1))
    paths = {"events": str(folder / "events.parquet"), "items": str(folder / "items.parquet")}
    io.write_table(data.events, paths["events"])
    io.write_table(data.items, paths["items"])
    return paths


@pytest.fixture(scope="module")
def built(sample, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uqa-built")
    manifest = build(sample["events"], sample["items"], str(out), BuildConfig(seed=7))
    return {"out": out, "manifest": manifest, "questions": read_questions(str(out))}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _events_by_user(path: str) -> dict[str, list[tuple]]:
    by_user: dict[str, list[tuple]] = {}
    for row in io.read_table(path).to_pylist():
        by_user.setdefault(row["user_id"], []).append((parse_timestamp(row["timestamp"]), row["item_id"]))
    return {user: sorted(events) for user, events in by_user.items()}


def _items(path: str) -> dict[str, Item]:
    return {r["item_id"]: Item(r["item_id"], r["title"], tuple(r["tags"] or ()), r["category"])
            for r in io.read_table(path).to_pylist()}


def test_same_input_and_seed_give_the_same_bytes_and_another_seed_other_questions(sample, built, tmp_path):
    again = build(sample["events"], sample["items"], str(tmp_path / "again"), BuildConfig(seed=7))
    assert _files(tmp_path / "again") == _files(built["out"])
    assert again == built["manifest"]
    build(sample["events"], sample["items"], str(tmp_path / "other"), BuildConfig(seed=8))
    other = read_questions(str(tmp_path / "other" / "questions.jsonl"))
    assert [q["question_id"] for q in other] == [q["question_id"] for q in built["questions"]]
    assert sum(a["answer"] != b["answer"] for a, b in zip(other, built["questions"])) > len(other) / 2


def test_practice_sets_are_the_next_seeds_question_sets_and_leave_the_question_set_alone(sample, built, tmp_path):
    manifest = build(sample["events"], sample["items"], str(tmp_path / "p"), BuildConfig(seed=7, practice=2))
    assert (tmp_path / "p" / "questions.jsonl").read_bytes() == (built["out"] / "questions.jsonl").read_bytes()
    practice = read_questions(str(tmp_path / "p" / "practice.jsonl"))
    assert manifest["files"]["practice"] == "practice.jsonl" and manifest["practice_questions"] == len(practice)
    for k in (1, 2):
        build(sample["events"], sample["items"], str(tmp_path / f"s{k}"), BuildConfig(seed=7 + k))
        expected = [{**q, "question_id": f"{q['question_id']}~p{k}"}
                    for q in read_questions(str(tmp_path / f"s{k}"))]
        assert [q for q in practice if q["question_id"].endswith(f"~p{k}")] == expected
    assert len({q["question_id"] for q in practice}) == len(practice)
    rebuilt = build(sample["events"], sample["items"], str(tmp_path / "p"), BuildConfig(seed=7))  # no practice
    assert not (tmp_path / "p" / "practice.jsonl").exists() and "practice" not in rebuilt["files"]
    assert rebuilt["practice_questions"] == 0


def test_questions_are_well_formed_and_counted(built):
    questions, manifest = built["questions"], built["manifest"]
    assert set(q["subtask"] for q in questions) == set(SUBTASKS)
    for q in questions:
        assert list(q["options"]) == list(LETTERS) and q["answer"] in LETTERS
        assert len(set(q["options"].values())) == 4, q  # four different texts: one right answer
        assert q["dimension"] == SUBTASKS[q["subtask"]] and q["question_id"] == f"{q['user_id']}/{q['subtask']}"
    assert manifest["questions"] == len(questions) == sum(manifest["subtasks"].values())
    assert manifest["subtasks"] == {s: sum(q["subtask"] == s for q in questions) for s in SUBTASKS}
    assert sum(manifest["dimensions"].values()) == len(questions)
    users = manifest["users"]
    assert users["with_questions"] + sum(users["skipped"].values()) == users["with_events"] == 160
    assert manifest["rows"]["rejected"] == {} and manifest["rows"]["events_used"] == manifest["rows"]["events_read"]
    assert manifest["config"]["seed"] == 7 and manifest["input"]["events"][0]["path"] == "events.parquet"


def test_held_out_interactions_never_reach_the_history(sample, built):
    events = _events_by_user(sample["events"])
    history = _events_by_user(str(built["out"] / "history.parquet"))
    cuts = {q["user_id"]: (q["history"], q["heldout"]) for q in built["questions"]}
    assert set(history) == set(cuts)
    for user, (seen, heldout) in cuts.items():
        ordered = events[user]
        allowed = history[user]
        assert len(allowed) == seen["events"] >= 20 and heldout["events"] >= 5
        assert allowed == ordered[:seen["events"]]  # the history is exactly the first events, in time order
        assert seen["events"] + heldout["events"] == len(ordered)
        last_seen, first_held = parse_timestamp(seen["last_ts"]), parse_timestamp(heldout["first_ts"])
        assert allowed[-1][0] == last_seen < first_held == ordered[seen["events"]][0]
        assert not set(ordered[seen["events"]:]) & set(allowed)


def test_gold_answers_follow_the_definitions(sample, built):
    events, items = _events_by_user(sample["events"]), _items(sample["items"])
    titles = {i.title: i for i in items.values()}
    for q in built["questions"]:
        history = events[q["user_id"]][:q["history"]["events"]]
        heldout = events[q["user_id"]][q["history"]["events"]:]
        gold = q["options"][q["answer"]]
        wrong = [text for letter, text in q["options"].items() if letter != q["answer"]]
        touched = {items[i].title for _, i in events[q["user_id"]]}
        counts = Counter(t for _, i in history for t in interests_of(items[i]))
        if q["subtask"] == "direct_feature":
            assert gold in {items[i].title for _, i in history} and not set(wrong) & touched
        elif q["subtask"] == "matched_feature":
            tag = re.search(r'"(.+)"', q["question"]).group(1)
            assert all(tag in titles[text].tags for text in q["options"].values())
            assert gold in {items[i].title for _, i in history} and not set(wrong) & touched
        elif q["subtask"] == "next_item":
            assert gold == items[heldout[0][1]].title
            assert not set(wrong) & {items[i].title for _, i in heldout}
        elif q["subtask"] == "next_attribute":
            assert gold in items[heldout[0][1]].tags and not set(wrong) & set(items[heldout[0][1]].tags)
        elif q["subtask"] == "long_term_interests":
            third = sorted(counts.values(), reverse=True)[2]
            assert counts[gold] >= third and all(counts.get(w, 0) <= third / 2 for w in wrong)
        elif q["subtask"] == "short_term_interest":
            window = Counter(t for _, i in history[-10:] for t in interests_of(items[i]))
            best = max(window.values())
            assert window[gold] == best and all(window.get(w, 0) <= best / 2 for w in wrong)
        else:
            half = len(history) // 2
            first = Counter(t for _, i in history[:half] for t in interests_of(items[i]))
            second = Counter(t for _, i in history[half:] for t in interests_of(items[i]))

            change = {t: second.get(t, 0) / (len(history) - half) - first.get(t, 0) / half
                      for t in (gold, *wrong)}
            sign = 1 if " grew " in q["question"] else -1
            assert sign * change[gold] >= 0.2 and all(sign * change[w] <= 0 for w in wrong)


def test_gold_letters_are_balanced(built):
    questions = built["questions"]
    letters = Counter(q["answer"] for q in questions)
    assert built["manifest"]["gold_letters"] == {letter: letters[letter] for letter in LETTERS}
    assert all(0.2 <= letters[letter] / len(questions) <= 0.3 for letter in LETTERS), letters
    for subtask in SUBTASKS:
        per_task = Counter(q["answer"] for q in questions if q["subtask"] == subtask)
        total = sum(per_task.values())
        assert all(0.1 <= per_task[letter] / total <= 0.4 for letter in LETTERS), (subtask, per_task)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def test_the_question_text_alone_stays_near_chance(built):
    """Baselines that see only the question and its options: none may beat guessing."""
    questions = built["questions"]
    baselines = {
        "always A": lambda q: "A",
        "most words shared with the question": lambda q: max(
            LETTERS, key=lambda letter: (len(_words(q["options"][letter]) & _words(q["question"])), -ord(letter))),
        "longest option": lambda q: max(LETTERS, key=lambda letter: (len(q["options"][letter]), -ord(letter))),
    }
    for name, guess in baselines.items():
        result = accuracy(questions, {q["question_id"]: guess(q) for q in questions})
        assert 0.19 <= result["overall"]["accuracy"] <= 0.31, (name, result["overall"])
        for dimension, cell in result["dimensions"].items():
            assert 0.14 <= cell["accuracy"] <= 0.36, (name, dimension, cell)


def test_the_history_answers_what_the_question_text_cannot(sample, built):
    """The same questions are answerable from the history: a counting heuristic that sees it scores
    far above chance, so the near-chance result above is not a broken question set."""
    events, items = _events_by_user(sample["events"]), _items(sample["items"])

    def from_history(q):
        seen = events[q["user_id"]][:q["history"]["events"]]
        counts = Counter(t for _, i in seen for t in interests_of(items[i]))
        counts.update(items[i].title for _, i in seen)
        return max(LETTERS, key=lambda letter: (counts[q["options"][letter]], -ord(letter)))

    result = accuracy(built["questions"], {q["question_id"]: from_history(q) for q in built["questions"]})
    assert result["overall"]["accuracy"] > 0.6
    assert result["subtasks"]["long_term_interests"]["accuracy"] == 1.0


def test_journeys_past_the_cut_are_refused(built, sample, journeys_dir, small_sample, tmp_path):
    # The session's journeys were extracted from whole histories: they hold held-out interactions.
    with pytest.raises(InputError, match="past their user's history cut.*history.parquet"):
        build(small_sample["events"], small_sample["items"], str(tmp_path / "leak"), journeys_path=journeys_dir)
    assert not (tmp_path / "leak").exists()  # nothing written
    # Journeys that end at each user's cut pass, and the check is in the manifest.
    cuts = {q["user_id"]: q["history"] for q in built["questions"]}
    users = sorted(cuts)[:5]
    table = pa.table({
        "journey_id": [f"j{n}" for n in range(5)], "user_id": users, "item_ids": [["x"]] * 5,
        "first_ts": [parse_timestamp(cuts[u]["last_ts"]) - 10**9 for u in users],
        "last_ts": [parse_timestamp(cuts[u]["last_ts"]) for u in users],
        **{name: [0] * 5 for name in ("num_events", "num_items", "active_days")}, "span_days": [1.0] * 5,
        "salient_terms": [[]] * 5, "representative_titles": [[]] * 5, "centroid": [[0.0]] * 5,
        "persistence": [1.0] * 5, "strategy": ["icpc"] * 5, "embedding_model": ["m"] * 5,
        "first_seen": [parse_timestamp(cuts[u]["last_ts"]) - 10**9 for u in users], "version": [1] * 5,
    }, schema=schema.JOURNEYS)
    io.write_table(table, str(tmp_path / "journeys" / "part-00000.parquet"))
    manifest = build(sample["events"], sample["items"], str(tmp_path / "ok"), BuildConfig(seed=7),
                     str(tmp_path / "journeys"))
    assert manifest["journeys_check"] == {"journeys": 5, "question_users_with_journeys": 5,
                                          "question_users_without_journeys": len(cuts) - 5, "past_the_cut": 0}
    assert (tmp_path / "ok" / "questions.jsonl").read_bytes() == (built["out"] / "questions.jsonl").read_bytes()


def test_bad_rows_are_dead_lettered_with_reasons_and_a_missing_column_is_a_clear_error(sample, tmp_path):
    events = io.read_table(sample["events"]).to_pylist()[:400]
    bad = tmp_path / "events.jsonl"
    lines = [json.dumps({**e, "timestamp": e["timestamp"].isoformat()}) for e in events]
    lines += ['{"user_id": "u9", "item_id": "i000001", "timestamp": "yesterday"}',
              '{"user_id": "u9", "item_id": "no-such-item", "timestamp": 1767225600}', "{not json"]
    bad.write_text("\n".join(lines) + "\n")
    manifest = build(str(bad), sample["items"], str(tmp_path / "out"))
    assert manifest["rows"]["rejected"] == {"bad_timestamp": 1, "malformed_row": 1, "unknown_item": 1}
    assert manifest["rows"]["events_read"] == 403 and manifest["rows"]["events_used"] == 400
    dead = [json.loads(line) for line in (tmp_path / "out" / "dead_letter.jsonl").read_text().splitlines()]
    assert sorted(d["reason"] for d in dead) == ["bad_timestamp", "malformed_row", "unknown_item"]
    assert all(d["detail"] for d in dead)

    no_time = tmp_path / "no_time.csv"
    no_time.write_text("user_id,item_id\nu1,i000001\n")
    with pytest.raises(InputError, match="'timestamp'"):
        build(str(no_time), sample["items"], str(tmp_path / "never"))
    with pytest.raises(ValueError, match="holdout"):
        BuildConfig(holdout=0)


def test_build_and_score_from_the_command_line(sample, built, tmp_path, capsys):
    assert cli.main(["uqabench", "build", "--events", sample["events"], "--items", sample["items"],
                     "--out", str(tmp_path / "q"), "--seed", "7"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["questions"] == built["manifest"]["questions"]
    assert (tmp_path / "q" / "questions.jsonl").read_bytes() == (built["out"] / "questions.jsonl").read_bytes()
    questions = built["questions"]
    predictions = tmp_path / "predictions.jsonl"
    # Right for the first half (with trailing text, as a model would write), "A" for the rest.
    rows = [{"question_id": q["question_id"], "prediction": q["answer"] + ". because" if n % 2 == 0 else "A"}
            for n, q in enumerate(questions)]
    predictions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli.main(["uqabench", "score", "--questions", str(tmp_path / "q"), "--predictions", str(predictions)]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = sum(n % 2 == 0 or q["answer"] == "A" for n, q in enumerate(questions))
    assert report["overall"]["correct"] == expected and report["overall"]["missing"] == 0
    predictions.write_text('{"question_id": "x"}\n')
    assert cli.main(["uqabench", "score", "--questions", str(tmp_path / "q"), "--predictions", str(predictions)]) == 2
    assert "prediction" in capsys.readouterr().err
