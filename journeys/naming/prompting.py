"""Prompts for the LLM namers: versioned templates, untrusted item text made safe, and exemplars.

Item titles come from catalogues anyone can write to, so they are data, never instructions: each is
flattened to one line without our field labels, so a title cannot start a line of its own ("Name:
HACKED") or close the items list. What the model answers is validated afterwards as well.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

import numpy as np

from journeys.naming.boilerplate import without_boilerplate
from prompts import EXEMPLAR, EXEMPLARS, PROMPTS_DIR

MAX_TITLE_CHARS = 120
SEPARATOR = " | "
# Our own field labels; a title that contains one is rewritten so it cannot pose as a field.
_LABEL = re.compile(r"\b(items|keywords|name|titles)\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.name}/v{self.version}"

    @property
    def instruction(self) -> str:
        """The fixed first line, which a name must never repeat."""
        return self.text.splitlines()[0]

    def render(self, **fields: str) -> str:
        return self.text.format(**fields).rstrip()


@cache
def load_template(name: str, version: str = "1") -> Template:
    path = PROMPTS_DIR / f"{name}.v{version}.txt"
    if not path.is_file():
        known = sorted(p.name for p in PROMPTS_DIR.glob("*.txt"))
        raise ValueError(f"no prompt template '{name}' version {version}; templates: {', '.join(known)}")
    return Template(name, version, path.read_text(encoding="utf-8"))


def template_from_id(template_id: str) -> Template:
    """The template that ``Template.id`` names, e.g. ``tuned/v1``."""
    name, _, version = template_id.partition("/v")
    return load_template(name, version or "1")


def sanitise(text: str, limit: int = MAX_TITLE_CHARS) -> str:
    """One line of plain text: no control characters or line breaks, no field labels, no separator."""
    text = unicodedata.normalize("NFKC", str(text))
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = _LABEL.sub(lambda m: m.group(1), text).replace("|", "/")
    text = " ".join(text.split())
    return text[:limit].rstrip()


def journey_inputs(journey: dict, max_titles: int, max_keywords: int) -> tuple[list[str], list[str]]:
    """Titles most representative first (extraction orders them so), then the salient terms; text
    repeated verbatim across the titles (boilerplate) is left out of both."""
    journey = without_boilerplate(journey)
    titles = [t for t in (sanitise(t) for t in journey.get("representative_titles", [])) if t][:max_titles]
    keywords = [sanitise(term["term"].replace("_", " "), 40) for term in journey.get("salient_terms", [])]
    return titles, [k for k in keywords if k][:max_keywords]


def fields_for(titles: list[str], keywords: list[str]) -> dict[str, str]:
    return {"titles": SEPARATOR.join(titles), "keywords": ", ".join(keywords) or "none"}


@dataclass(frozen=True)
class Exemplar:
    titles: tuple[str, ...]
    keywords: tuple[str, ...]
    name: str
    domain: str


def load_exemplars(path: str | None = None) -> list[Exemplar]:
    """The curated bank: one JSON object per line with titles, keywords, name and domain."""
    source = EXEMPLARS if path is None else path
    exemplars = []
    with open(source, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                exemplars.append(Exemplar(tuple(row["titles"]), tuple(row.get("keywords", ())), row["name"],
                                          row.get("domain", "")))
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{source}, line {number}: not an exemplar ({err})") from err
    if not exemplars:
        raise ValueError(f"{source} holds no exemplars")
    return exemplars


class ExemplarBank:
    """Finds the exemplars nearest a journey: cosine between the journey centroid and the mean of
    each exemplar's title embeddings, in the same sentence-encoder space the centroids live in."""

    def __init__(self, exemplars: list[Exemplar], encode):
        self.exemplars = exemplars
        vectors = []
        for exemplar in exemplars:
            mean = encode(list(exemplar.titles)).mean(axis=0)
            vectors.append(mean / (np.linalg.norm(mean) or 1.0))
        self.vectors = np.stack(vectors).astype(np.float32)

    def nearest(self, centroid: np.ndarray, k: int) -> list[Exemplar]:
        scores = self.vectors @ centroid
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        return [self.exemplars[i] for i in reversed(order)]  # the closest sits next to the question


def render_exemplars(exemplars: list[Exemplar], max_titles: int) -> str:
    template = template_from_id(EXEMPLAR)
    return "".join(
        template.text.format(**fields_for([sanitise(t) for t in e.titles][:max_titles], list(e.keywords)),
                             name=e.name)
        for e in exemplars
    )
