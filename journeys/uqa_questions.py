"""The UQABench-style question set: its format, how questions are made from events, and reading it.

Writing a question set to disk (``journeys uqabench build``, with input fingerprints) is done above the
library, in the evaluation layer;
this module is what the encoders, the LLM side and scoring share.

Each user's time-ordered interactions are cut in two: the **history** (what a user encoder, a
journey extraction or a text prompt may see) and the **held-out** tail (at least the last
``holdout`` interactions: every event at or after the time of the K-th last one, so the cut is a
clean time cut even when events share a timestamp). Questions about the future are answered from
the held-out tail; questions about the past from the history alone.

Output (``journeys uqabench build --out OUT``):

- ``OUT/questions.jsonl``: one question per line, users in id order, sub-tasks in the order below::

      {"question_id": "u00003/next_item", "user_id": "u00003",
       "dimension": "action_prediction", "subtask": "next_item",
       "question": "Which item will the user interact with next?",
       "options": {"A": "...", "B": "...", "C": "...", "D": "..."}, "answer": "C",
       "history": {"events": 61, "last_ts": "2026-06-01T18:04:11+00:00"},
       "heldout": {"events": 5, "first_ts": "2026-06-03T09:12:40+00:00"}}

  ``history`` is the cut: the encoder may see the user's first ``history.events`` interactions in
  time order, all at or before ``history.last_ts`` (``OUT/history.parquet`` holds exactly those
  events). ``answer`` is one letter; UQABench's rule scores it (see ``uqa_scoring.py``).
- ``OUT/history.parquet``: the history events of every user with questions (the events schema),
  to extract journeys from and to train or run encoders on: never the held-out interactions.
- ``OUT/dead_letter.jsonl``: input rows that were rejected, with the reason (as in extract).
- ``OUT/practice.jsonl`` (with ``--practice K``): K more question sets from the same cuts, each drawn
  with its own seed, ids ``u00003/next_item~p1``: training material only. A few hundred
  training questions let a LoRA memorise who answers which letter; the same user with re-drawn
  options and letters has to be read. Evaluation reads ``questions.jsonl`` alone.
- ``OUT/_manifest.json``, written last: counts per sub-task and dimension, gold letters, users
  and questions skipped with the reason, the configuration and its hash, and every input file's
  size and SHA-256. It holds no clock time, so a rerun with the same input and seed gives
  byte-identical files.

The seven sub-tasks. "Interests" are item tags (an item without tags counts its category); an
event counts each interest of its item once. Every question has four options, one gold:

========================  ======================  ================================================
dimension                 sub-task                gold answer / distractors
========================  ======================  ================================================
sequence_understanding    direct_feature          a history item's title, chosen at random /
                                                  titles of catalogue items the user never touched
sequence_understanding    matched_feature         "Which item tagged T ...": a history item with
                                                  tag T / other items tagged T the user never
                                                  touched (every option carries T)
action_prediction         next_item               the first held-out item / one other history
                                                  item and two catalogue items, none held out
action_prediction         next_attribute          one tag of the next item / tags the next item
                                                  lacks: two from the history, one from anywhere
interest_perception       long_term_interests     one of the three most frequent history tags /
                                                  tags at most half as frequent as the third: two
                                                  from the history, one from anywhere
interest_perception       short_term_interest     the most frequent tag of the last
                                                  ``short_window`` history events / tags at most
                                                  half as frequent there: two from the history
interest_perception       interest_trajectory     the tag whose share of events grew (or faded,
                                                  chosen at random) the most from the first half
                                                  of the history to the second, by at least
                                                  ``min_change`` / tags that did not move that way
========================  ======================  ================================================

Why the answer cannot be read off the question: the question texts are fixed per sub-task (only
matched_feature names a tag, and all four of its options carry that tag; trajectory says "grew" or
"faded"), distractors are of the same kind as the gold (titles with titles, tags with tags), never
the gold or a second right answer, and the gold's position is uniform over A-D. Distractors drawn
from the user's own history keep "pick the option seen in the history" from answering the
interest and attribute questions. Ties make a question skipped or widen the right answers, never
ambiguous options. Randomness is seeded per (seed, user, sub-task), so a user's questions do not
depend on other users, and a rerun gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from journeys import io
from journeys.inputs import InputError, check_inputs
from journeys.model import Event, Item, to_datetime
from journeys.user_extraction import dedupe_events
from journeys.validation import DeadLetter, validate_event, validate_item

FORMAT_VERSION = "1"
LETTERS = "ABCD"

# sub-task -> dimension; the order is the output order and part of each question's seed.
SUBTASKS = {
    "direct_feature": "sequence_understanding",
    "matched_feature": "sequence_understanding",
    "next_item": "action_prediction",
    "next_attribute": "action_prediction",
    "long_term_interests": "interest_perception",
    "short_term_interest": "interest_perception",
    "interest_trajectory": "interest_perception",
}
DIMENSIONS = tuple(dict.fromkeys(SUBTASKS.values()))
PRACTICE_FILE = "practice.jsonl"


@dataclass(frozen=True)
class BuildConfig:
    seed: int = field(default=0, metadata={"help": "random seed; same seed and input, same questions"})
    holdout: int = field(default=5, metadata={"help": "K: the last K interactions are held out of the history"})
    min_history: int = field(default=20, metadata={"help": "fewest history events for a user to get questions"})
    short_window: int = field(default=10, metadata={"help": "last history events that make the short-term interest"})
    min_change: float = field(default=0.2, metadata={
        "help": "trajectory: least change of an interest's share of events between the history's halves"})
    max_matched_tries: int = field(default=20, metadata={
        "help": "matched feature: (item, tag) pairs tried before the user's question is skipped"})
    practice: int = field(default=0, metadata={
        "help": "K more question sets for training, drawn from the same cuts with seeds seed+1..seed+K "
                "(practice.jsonl); alignment trains on its training users' ones too, evaluation never reads them"})

    def __post_init__(self):
        if self.holdout < 1:
            raise ValueError("holdout must be at least 1: the next item must be held out")
        if self.min_history < 2:
            raise ValueError("min_history must be at least 2 (the trajectory compares two halves)")
        if self.short_window < 1:
            raise ValueError("short_window must be at least 1")
        if not 0 < self.min_change <= 1:
            raise ValueError("min_change must be in (0, 1]")
        if self.max_matched_tries < 1:
            raise ValueError("max_matched_tries must be at least 1")
        if self.practice < 0:
            raise ValueError("practice cannot be negative")


def interests_of(item: Item) -> tuple[str, ...]:
    """An item's interests: its tags, or its category when it has none."""
    return item.tags or ((item.category,) if item.category else ())


class Catalogue:
    """The item catalogue, with the sorted pools distractors are drawn from."""

    def __init__(self, items: dict[str, Item]):
        self.items = items
        self.ids = sorted(items)
        self.titles = [items[i].title for i in self.ids]
        by_interest: dict[str, list[str]] = {}
        for item_id in self.ids:
            for interest in interests_of(items[item_id]):
                by_interest.setdefault(interest, []).append(items[item_id].title)
        self.titles_by_interest = by_interest
        self.interests = sorted(by_interest)

    def title(self, item_id: str) -> str:
        return self.items[item_id].title


@dataclass(frozen=True)
class Cut:
    """One user's events split at the history cut."""

    user_id: str
    history: list[Event]
    heldout: list[Event]


def cut_history(user_id: str, events: list[Event], holdout: int) -> Cut:
    """History = every event before the time of the ``holdout``-th last one; the rest is held out."""
    ordered = sorted(events, key=lambda e: (e.ts, e.item_id))
    if len(ordered) <= holdout:
        return Cut(user_id, [], ordered)
    cut_ts = ordered[len(ordered) - holdout].ts
    history = [e for e in ordered if e.ts < cut_ts]
    return Cut(user_id, history, ordered[len(history):])


def _rng(seed: int, user_id: str, subtask: str) -> np.random.Generator:
    user_key = int(hashlib.sha256(user_id.encode()).hexdigest()[:16], 16)
    return np.random.default_rng([seed, user_key, list(SUBTASKS).index(subtask)])


def _draw(rng: np.random.Generator, pool: Sequence[str], count: int, taken: set[str]) -> list[str]:
    """Up to ``count`` distinct texts from ``pool`` (sorted, so the draw depends only on the seed),
    skipping ``taken``; what is drawn is added to ``taken``."""
    drawn: list[str] = []
    if count <= 0 or not pool:
        return drawn
    for index in rng.permutation(len(pool)):
        text = pool[index]
        if text not in taken:
            drawn.append(text)
            taken.add(text)
            if len(drawn) == count:
                break
    return drawn


def _options(rng, gold: str, near: Sequence[str], far: Sequence[str], n_near: int,
             forbidden: set[str]) -> tuple[dict[str, str], str] | None:
    """Three distractors (``n_near`` from ``near`` when it has them, the rest from ``far``, never the
    gold or anything ``forbidden``) and the gold at a uniformly random letter; None when there are
    not three."""
    taken = {gold, *forbidden}
    distractors = _draw(rng, near, n_near, taken)
    distractors += _draw(rng, far, 3 - len(distractors), taken)
    distractors += _draw(rng, near, 3 - len(distractors), taken)
    if len(distractors) < 3:
        return None
    distractors = [distractors[i] for i in rng.permutation(3)]
    position = int(rng.integers(4))
    texts = [*distractors[:position], gold, *distractors[position:]]
    return dict(zip(LETTERS, texts)), LETTERS[position]


def _counts(events: Sequence[Event], catalogue: Catalogue) -> Counter:
    return Counter(interest for e in events for interest in interests_of(catalogue.items[e.item_id]))


# ---- the sub-tasks: each returns (question text, options, gold letter) or a skip reason ------------

def _direct_feature(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    seen = sorted({e.item_id for e in cut.history})
    gold = seen[int(rng.integers(len(seen)))]
    touched = {catalogue.title(e.item_id) for e in (*cut.history, *cut.heldout)}
    made = _options(rng, catalogue.title(gold), [], catalogue.titles, 0, touched)
    return ("Which of these items has the user interacted with?", *made) if made else "too_few_distractors"


def _matched_feature(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    seen = sorted({e.item_id for e in cut.history})
    pairs = [(item_id, interest) for item_id in seen for interest in interests_of(catalogue.items[item_id])]
    if not pairs:
        return "no_interests"
    touched = {catalogue.title(e.item_id) for e in (*cut.history, *cut.heldout)}
    for index in rng.permutation(len(pairs))[:config.max_matched_tries]:
        item_id, interest = pairs[index]
        made = _options(rng, catalogue.title(item_id), [], catalogue.titles_by_interest[interest], 0, touched)
        if made:
            return (f'Which of these items tagged "{interest}" has the user interacted with?', *made)
    return "too_few_distractors"


def _next_item(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    gold = cut.heldout[0].item_id
    heldout_titles = {catalogue.title(e.item_id) for e in cut.heldout}
    earlier = sorted({catalogue.title(e.item_id) for e in cut.history} - heldout_titles)
    made = _options(rng, catalogue.title(gold), earlier, catalogue.titles, 1, heldout_titles)
    return ("Which item will the user interact with next?", *made) if made else "too_few_distractors"


def _next_attribute(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    carried = sorted(interests_of(catalogue.items[cut.heldout[0].item_id]))
    if not carried:
        return "no_interests"
    gold = carried[int(rng.integers(len(carried)))]
    in_history = sorted(set(_counts(cut.history, catalogue)) - set(carried))
    made = _options(rng, gold, in_history, catalogue.interests, 2, set(carried))
    return ("Which tag will the next item the user interacts with carry?", *made) if made else "too_few_distractors"


def _top_and_minor(counts: Counter, top_n: int) -> tuple[list[str], list[str], set[str]] | None:
    """The interests ranked within the top ``top_n`` (ties included), those at most half as frequent
    as the last of them (safe distractors), and the rest (neither right nor safely wrong)."""
    if not counts:
        return None
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    threshold = ranked[min(top_n, len(ranked)) - 1][1]
    top = sorted(k for k, c in counts.items() if c >= threshold)
    minor = sorted(k for k, c in counts.items() if c <= threshold / 2)
    unsure = set(counts) - set(top) - set(minor)
    return top, minor, unsure


def _long_term(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    split = _top_and_minor(_counts(cut.history, catalogue), 3)
    if split is None:
        return "no_interests"
    top, minor, unsure = split
    gold = top[int(rng.integers(len(top)))]
    made = _options(rng, gold, minor, catalogue.interests, 2, set(top) | unsure)
    question = "Which of these is one of the user's three main interests over their whole history?"
    return (question, *made) if made else "too_few_distractors"


def _short_term(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    window = _counts(cut.history[-config.short_window:], catalogue)
    if not window:
        return "no_interests"
    best = max(window.values())
    top = sorted(k for k, c in window.items() if c == best)
    loud = {k for k, c in window.items() if c > best / 2}
    # Near distractors: interests of the longer history that are (nearly) absent from the window.
    quiet = sorted(k for k in _counts(cut.history, catalogue) if window.get(k, 0) <= best / 2)
    gold = top[int(rng.integers(len(top)))]
    made = _options(rng, gold, quiet, catalogue.interests, 2, loud)
    question = f"Which interest dominates the user's most recent {config.short_window} interactions?"
    return (question, *made) if made else "too_few_distractors"


def _trajectory(cut: Cut, catalogue: Catalogue, config: BuildConfig, rng):
    half = len(cut.history) // 2
    first, second = cut.history[:half], cut.history[half:]
    before, after = _counts(first, catalogue), _counts(second, catalogue)
    change = {k: after.get(k, 0) / len(second) - before.get(k, 0) / len(first) for k in set(before) | set(after)}
    if not change:
        return "no_interests"
    directions = ["grew", "faded"]
    start = int(rng.integers(2))
    for direction in directions[start:] + directions[:start]:
        sign = 1 if direction == "grew" else -1
        best = max(sign * c for c in change.values())
        if best < config.min_change:
            continue
        top = sorted(k for k, c in change.items() if sign * c == best)
        moved = {k for k, c in change.items() if sign * c > 0}
        still = sorted(k for k, c in change.items() if sign * c <= 0)
        gold = top[int(rng.integers(len(top)))]
        made = _options(rng, gold, still, catalogue.interests, 2, moved)
        if made:
            question = (f"Which interest {direction} the most from the first half of the user's history "
                        "to the second?")
            return (question, *made)
    return "no_clear_trajectory"


_BUILDERS = {
    "direct_feature": _direct_feature,
    "matched_feature": _matched_feature,
    "next_item": _next_item,
    "next_attribute": _next_attribute,
    "long_term_interests": _long_term,
    "short_term_interest": _short_term,
    "interest_trajectory": _trajectory,
}


def iso_time(micros: int) -> str:
    return to_datetime(micros).isoformat()


def user_questions(cut: Cut, catalogue: Catalogue, config: BuildConfig) -> tuple[list[dict], dict[str, str]]:
    """One user's questions, and the sub-tasks skipped with the reason."""
    questions, skipped = [], {}
    for subtask, make in _BUILDERS.items():
        made = make(cut, catalogue, config, _rng(config.seed, cut.user_id, subtask))
        if isinstance(made, str):
            skipped[subtask] = made
            continue
        text, options, answer = made
        questions.append({
            "question_id": f"{cut.user_id}/{subtask}", "user_id": cut.user_id,
            "dimension": SUBTASKS[subtask], "subtask": subtask, "question": text, "options": options,
            "answer": answer,
            "history": {"events": len(cut.history), "last_ts": iso_time(cut.history[-1].ts)},
            "heldout": {"events": len(cut.heldout), "first_ts": iso_time(cut.heldout[0].ts)},
        })
    return questions, skipped


@dataclass
class QuestionSet:
    questions: list[dict]
    cuts: list[Cut]  # users with questions, in id order
    users_skipped: Counter  # reason -> users
    questions_skipped: dict[str, Counter]  # sub-task -> reason -> users


def build_questions(events: list[Event], items: dict[str, Item], config: BuildConfig) -> QuestionSet:
    """The question set from clean events (every item in ``items``) and the catalogue."""
    catalogue = Catalogue(items)
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    result = QuestionSet([], [], Counter(), {s: Counter() for s in SUBTASKS})
    for user_id in sorted(by_user):
        cut = cut_history(user_id, by_user[user_id], config.holdout)
        if len(cut.history) < config.min_history:
            result.users_skipped["too_few_history_events"] += 1
            continue
        questions, skipped = user_questions(cut, catalogue, config)
        for subtask, reason in skipped.items():
            result.questions_skipped[subtask][reason] += 1
        if questions:
            result.questions.extend(questions)
            result.cuts.append(cut)
        else:
            result.users_skipped["no_question"] += 1
    return result


def practice_questions(cuts: list[Cut], items: dict[str, Item], config: BuildConfig) -> list[dict]:
    """``config.practice`` more questions per user and sub-task from the same cuts, each set drawn with
    its own seed (other golds among equals, other distractors, other letters), ids ``.../subtask~pK``.
    A training user seen with re-drawn options cannot be learnt as "user X answers C"."""
    if not config.practice:
        return []
    catalogue = Catalogue(items)
    practice = []
    for k in range(1, config.practice + 1):
        redrawn = replace(config, seed=config.seed + k)
        for cut in cuts:
            questions, _ = user_questions(cut, catalogue, redrawn)
            practice += [{**q, "question_id": f"{q['question_id']}~p{k}"} for q in questions]
    return practice


# ---- files -----------------------------------------------------------------------------------------

@dataclass
class Inputs:
    events: list[Event]
    items: dict[str, Item]
    dead: list[DeadLetter]
    rows: Counter  # events_read, items_read


def _validated(path: str, source: str, validate, rows: Counter):
    """(clean, None) or (None, dead letter) for every row of every file behind ``path``."""
    for file in io.list_input_files(path):
        for row, problem, number in io.iter_numbered_rows(file):
            rows[f"{source}_read"] += 1
            if row is None:
                yield None, DeadLetter(source, "malformed_row", problem)
                continue
            clean, dead = validate(row)
            # The dead letter says where the row was, as extract's do.
            yield clean, dead and replace(dead, detail=f"{file} row {number}: {dead.detail}")


def read_inputs(events_path: str, items_path: str) -> Inputs:
    """Validated events and items, as extract reads them; every rejected row is a dead letter."""
    check_inputs(events_path, items_path)
    dead: list[DeadLetter] = []
    rows: Counter = Counter()
    copies: dict[str, list[Item]] = {}
    for item, rejected in _validated(items_path, "items", validate_item, rows):
        if rejected:
            dead.append(rejected)
        else:
            copies.setdefault(item.item_id, []).append(item)
    items = {}
    for item_id, versions in copies.items():
        versions.sort(key=lambda it: (it.title, it.tags, it.category or "", it.text or ""))
        items[item_id] = versions[0]
        dead += [DeadLetter("items", "duplicate_item", "another row has the same item_id", extra._asdict(), None,
                            item_id) for extra in versions[1:]]
    by_user: dict[str, list[Event]] = {}
    for event, rejected in _validated(events_path, "events", validate_event, rows):
        if rejected:
            dead.append(rejected)
        elif event.item_id not in items:
            dead.append(DeadLetter("events", "unknown_item", "item_id is not in the item catalogue (or its "
                                   "catalogue row was rejected)", event._asdict(), event.user_id, event.item_id))
        else:
            by_user.setdefault(event.user_id, []).append(event)
    events: list[Event] = []
    for user_id in sorted(by_user):
        kept, duplicates = dedupe_events(by_user[user_id])
        events += kept
        dead += duplicates
    return Inputs(events, items, dead, rows)


def read_questions(path: str) -> list[dict]:
    """The question records of a ``questions.jsonl`` (or the folder holding it)."""
    fs, local = io.url_to_fs(path)
    if fs.isdir(local):
        path, local = io.join(path, "questions.jsonl"), io.join(local, "questions.jsonl")
    if not fs.exists(local):
        raise InputError(f"no question set at '{path}': pass the questions.jsonl (or its folder) from "
                         "`journeys uqabench build`")
    with fs.open(local, "r", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
