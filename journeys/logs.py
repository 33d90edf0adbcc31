"""Logging set-up for the command line: our progress at INFO, everything else at WARNING."""

from __future__ import annotations

import logging

# Beam logs this at import time when its optional BigQuery client is absent; we never use BigQuery.
_HARMLESS = ("apitools not found",)


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(str(record.msg).startswith(text) for text in _HARMLESS)


def configure(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropHarmless())
    for name in ("journeys", "pipelines", "tuning", "eval"):
        logging.getLogger(name).setLevel(logging.INFO)
