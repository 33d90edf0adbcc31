"""Versioned prompt templates and the exemplar bank, shipped as package data.

Templates are ``<name>.v<version>.txt`` files with ``{titles}``, ``{keywords}`` and (few-shot only)
``{exemplars}`` placeholders. A template is never edited in place once released: a change is a new
version file, and every name records the template version that produced it.
"""

from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
EXEMPLARS = PROMPTS_DIR / "exemplars.jsonl"
# The versions new names and new adapters use. v1 was written for the encoder-decoder base that no
# longer ships; v2 is worded for causal LMs, which continue a text rather than answer a request.
FEW_SHOT = "few_shot/v2"
EXEMPLAR = "exemplar/v2"
TUNED = "tuned/v2"
