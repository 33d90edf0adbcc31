"""Versioned prompt templates and the exemplar bank, shipped as package data.

Templates are ``<name>.v<version>.txt`` files with ``{titles}``, ``{keywords}`` and (few-shot only)
``{exemplars}`` placeholders. A template is never edited in place once released: a change is a new
version file, and every name records the template version that produced it.
"""

from pathlib import Path

PROMPTS_DIR = Path(__file__).parent
EXEMPLARS = PROMPTS_DIR / "exemplars.jsonl"
