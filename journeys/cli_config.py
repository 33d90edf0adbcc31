"""Command-line options from config dataclasses: one flag per field, its help from the field's metadata."""

from __future__ import annotations

from dataclasses import fields


def settings(args, config_class) -> dict:
    """The options given for a config dataclass's fields; the rest keep the dataclass defaults."""
    return {f.name: getattr(args, f.name) for f in fields(config_class) if getattr(args, f.name, None) is not None}


def add_fields(parser, config_class, skip=()) -> None:
    for f in fields(config_class):
        if f.name not in skip:
            parser.add_argument(f"--{f.name}", type=type(f.default), default=None,
                                help=f"{f.metadata['help']} (default {f.default})")
