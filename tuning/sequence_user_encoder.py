"""A pre-trained sequence encoder (``journeys uqabench pretrain``) as a user encoder for ``journeys encode``.

The user's embedding is the encoder's state after the last of their most recent ``max_len``
events (oldest first, ties broken by item id, as in the question set): the state the encoder was
trained to predict the next item from. A user with no usable event gets all zeros, a defined
empty-history embedding.

It reads **events** (``input = "events"``), unlike the journey encoder. Items the encoder never saw
cannot be embedded; the pipeline sends those events to the dead letters (``knows`` says which) and
encodes the user from the rest. ``version`` hashes the weights and configuration, so embeddings
from two trainings are never mixed up downstream.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

VERSION = "1"


class SequenceUserEncoder:
    input = "events"

    def __init__(self, kind: str, model_path: str, torch_threads: int = 1):
        import torch

        from tuning.sequence_encoders import CONFIG_FILE, WEIGHTS_FILE, load_encoder

        self.model, _ = load_encoder(model_path)
        if self.model.config.kind != kind:
            raise ValueError(f"'{model_path}' holds a {self.model.config.kind} encoder, not {kind}: "
                             f"pass --encoder {self.model.config.kind}")
        torch.set_num_threads(torch_threads)
        self.name, self.model_path = kind, model_path
        self.index = {item_id: i + 1 for i, item_id in enumerate(self.model.vocabulary.item_ids)}
        digest = hashlib.sha256()
        for file in (CONFIG_FILE, WEIGHTS_FILE):
            digest.update((Path(model_path) / file).read_bytes())
        self._version = f"{VERSION}-{digest.hexdigest()[:8]}"

    @classmethod
    def from_options(cls, name: str, sequence_model: str | None = None, torch_threads: int | None = None,
                     **others) -> SequenceUserEncoder:
        given = sorted(k for k, v in others.items() if v is not None)
        if given:
            raise ValueError(f"option(s) {', '.join(given)} do not apply to the {name} sequence encoder")
        if not sequence_model:
            raise ValueError(f"the {name} encoder needs --sequence_model: a folder from `journeys uqabench pretrain`")
        return cls(name, sequence_model, torch_threads or 1)

    def config_dict(self) -> dict:
        return {"sequence_model": self.model_path, "kind": self.name, "max_len": self.model.config.max_len}

    @property
    def version(self) -> str:
        return self._version

    @property
    def width(self) -> int:
        return self.model.config.dim

    def knows(self, item_id: str) -> bool:
        return item_id in self.index

    def problems(self, events: list[dict]) -> list[tuple[str, str]]:
        unknown = sorted({str(e.get("item_id")) for e in events if e.get("item_id") not in self.index})
        return [("unknown_item", f"{len(unknown)} items are not in the encoder's catalogue (first: {unknown[0]})")] \
            if unknown else []

    def encode(self, events: list[dict]) -> np.ndarray:
        """``events``: dicts with ``item_id`` and ``ts`` (any order); float32, ``width`` values."""
        import torch

        ordered = sorted(events, key=lambda e: (e["ts"], e["item_id"]))
        steps = [self.index[e["item_id"]] for e in ordered][-self.model.config.max_len:]
        if not steps:
            return np.zeros(self.width, dtype=np.float32)
        with torch.no_grad():
            state = self.model.user_embedding(torch.tensor([steps]), torch.tensor([len(steps)]))
        return state[0].numpy().astype(np.float32)
