"""User encoders: one interface, a registry by name, so ``pipelines/encode.py`` runs any of them.

An encoder declares which records it reads per user (``input``: ``"journeys"`` today; sequence
encoders will read ``"events"``), checks them (``problems``: each a reason code and a detail, so
the pipeline can dead-letter the user instead of writing a misleading embedding), and turns them
into one vector of a fixed ``width``. A user with no records gets ``encode([])``: a defined
embedding, never a dropped user. ``version`` changes whenever the output would, so embeddings
from different settings are never mixed up downstream.

Adding an encoder: a module with a config dataclass and a class with this interface, and one line in
``USER_ENCODERS``. Heavy back-ends are imported only when their encoder is created.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np


class UserEncoder(Protocol):
    name: str
    input: str  # the per-user records it reads: "journeys" (or, for sequence encoders, "events")

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
}
# Sequence encoders (tuning/sequence_encoders.py) that this registry cannot run yet: they read events,
# which the encode pipeline does not; asking for one says so instead of "unknown encoder".
PLANNED = ("sasrec", "gru4rec", "llama")


def create_user_encoder(name: str, **options) -> UserEncoder:
    if name not in USER_ENCODERS:
        if name in PLANNED:
            raise ValueError(f"the {name} sequence encoder is not available yet in `journeys encode` (pre-train one "
                             f"with `journeys uqabench pretrain`); encoders: {', '.join(USER_ENCODERS)}")
        raise ValueError(f"unknown encoder '{name}': choose one of {', '.join(USER_ENCODERS)}")
    module, cls = USER_ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls).from_options(**options)
