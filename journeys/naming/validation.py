"""Checks that make a generated or assembled name trustworthy, and per-user deduplication."""

from __future__ import annotations

import re
import unicodedata

from journeys.representation import tokens

MAX_WORDS = 8
# Names that say nothing about the interest, or that echo the instruction back.
BLOCKLIST = frozenset({
    "journey", "interest", "interests", "videos", "video", "stuff", "things", "misc", "miscellaneous",
    "various", "other", "unknown", "none", "n/a", "name", "journey name", "untitled", "playlist",
})
_PREFIX = re.compile(r"^\s*(journey\s*name|name|title|interest|answer)\s*[:\-–]\s*", re.IGNORECASE)
_QUOTES = "\"'“”‘’«»`"


def clean(text: str) -> str:
    """Strip quotes, a leading "Name:"-style prefix, trailing punctuation and extra space."""
    lines = unicodedata.normalize("NFKC", text or "").strip().splitlines()
    text = lines[0] if lines else ""  # a model may go on after the name: keep the first line
    text = _PREFIX.sub("", text).strip().strip(_QUOTES).strip()
    text = re.sub(r"\s+", " ", text).rstrip(".!?,;:").strip().strip(_QUOTES).strip()
    return text


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def problem(name: str, titles: list[str], instruction: str | None = None) -> str | None:
    """Why ``name`` is not acceptable, or None when it is."""
    if not name:
        return "empty"
    words = name.split()
    if len(words) > MAX_WORDS:
        return f"{len(words)} words > {MAX_WORDS}"
    if "\ufffd" in name:  # a character cut in half: the answer stopped inside a multi-byte token
        return "broken character"
    key = _key(name)
    if not key:
        return "no letters or digits"
    if key in BLOCKLIST:
        return "blocklisted"
    if not tokens(name):  # only stop words and numbers: "The (1998)" names no interest
        return "no content word"
    # A small model stuck in a loop ("Retro Retro Retro"); a word used twice apart ("Formula 1 and
    # Formula E") is fine.
    parts = key.split()
    if any(a == b for a, b in zip(parts, parts[1:])):
        return "repeats a word"
    if any(key == _key(title) for title in titles):
        return "copy of an item title"
    if instruction and key in _key(instruction):
        return "copy of the instruction"
    return None


def title_case(phrase: str) -> str:
    """Capitalise words, keeping acronyms and mixed-case words ("F1", "iPhone") as written."""
    small = {"a", "an", "and", "at", "for", "in", "of", "on", "or", "the", "to", "vs", "with"}
    words = phrase.split()
    out = []
    for index, word in enumerate(words):
        if word != word.lower():
            out.append(word)
        elif index > 0 and word in small:
            out.append(word)
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out)


def dedupe(names: list[str], users: list[str], alternatives: list[list[str]]) -> list[str]:
    """Make names distinct within each user: a repeat takes its next unused alternative, else a
    number. Deterministic: journeys are processed in the given order."""
    used: dict[str, set[str]] = {}
    result = []
    for name, user, options in zip(names, users, alternatives):
        taken = used.setdefault(user, set())
        chosen = name
        if _key(chosen) in taken:
            chosen = next((o for o in options if _key(o) not in taken), None) or name
            number = 2
            while _key(chosen) in taken:
                chosen = f"{name} ({number})"
                number += 1
        taken.add(_key(chosen))
        result.append(chosen)
    return result
