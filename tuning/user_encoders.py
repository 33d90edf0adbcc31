"""User encoders: one interface, a registry by name, so ``pipelines/encode.py`` runs any of them.

An encoder declares which records it reads per user (``input``: ``"journeys"``, or ``"events"``
for the sequence encoders), checks them (``problems``: each a reason code and a detail, so
the pipeline can dead-letter the user instead of writing a misleading embedding), and turns them
into one vector of a fixed ``width``. An encoder that reads events also says which items it
``knows``: the pipeline dead-letters events it could not embed. A user with no records gets
``encode([])``: a defined embedding, never a dropped user. ``version`` changes whenever the output
would, so embeddings from different settings are never mixed up downstream.

Adding an encoder: a module with a config dataclass and a class with this interface, and one line in
``USER_ENCODERS``. Heavy back-ends are imported only when their encoder is created.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np


class UserEncoder(Protocol):
    name: str
    input: str  # the per-user records it reads: "journeys" or "events"

    @property
    def version(self) -> str: ...

    @property
    def width(self) -> int: ...

    def problems(self, records: list[dict]) -> list[tuple[str, str]]: ...

    def encode(self, records: list[dict]) -> np.ndarray: ...

    def config_dict(self) -> dict: ...


# name -> "module:Class"; resolved lazily so that listing encoders imports nothing heavy.
USER_ENCODERS = {
    "journey": "tuning.journey_encoder:JourneyEncoder",
    # pre-trained by `journeys uqabench pretrain`; one class loads any of the three backbones
    "sasrec": "tuning.sequence_user_encoder:SequenceUserEncoder",
    "gru4rec": "tuning.sequence_user_encoder:SequenceUserEncoder",
    "llama": "tuning.sequence_user_encoder:SequenceUserEncoder",
}


def create_user_encoder(name: str, **options) -> UserEncoder:
    """The encoder called ``name``. Options that are None are unset; an option that is set but does
    not apply to this encoder is refused (it would otherwise be silently ignored)."""
    if name not in USER_ENCODERS:
        raise ValueError(f"unknown encoder '{name}': choose one of {', '.join(USER_ENCODERS)}")
    module, cls = USER_ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls).from_options(name, **options)
