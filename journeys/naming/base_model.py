"""The offline default base model for the LLM namers, and loading any other model by id or path.

No generative checkpoint can be downloaded offline, so the default is built on this machine from the
sentence encoder that ships with the package: a BERT-to-BERT encoder-decoder warm-started from
all-MiniLM-L6-v2 (Rothe et al., 2020). The encoder, the decoder's self-attention and the word
embeddings start trained; the decoder's cross-attention starts random (fixed seed, so every machine
builds the same weights). It is a base to tune, not a ready namer: untuned, its few-shot names fail
validation and fall back to keywords. Any Hugging Face causal or sequence-to-sequence model id or
local path can be used instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

DEFAULT_BASE = "minilm-bert2bert"
_ALIASES = {DEFAULT_BASE, "default"}
_BUILD_SEED = 0


def cache_dir() -> Path:
    """Where built models live: ``$JOURNEYS_CACHE`` or the user's cache folder."""
    root = os.environ.get("JOURNEYS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "journeys")
    return Path(root)


def is_default(name: str | None) -> bool:
    return name is None or name in _ALIASES


def model_identity(name: str | None) -> str:
    return DEFAULT_BASE if is_default(name) else str(name).rstrip("/")


def resolve(name: str | None) -> str:
    """A loadable location for ``name``: the default is built once and cached; others pass through."""
    if not is_default(name):
        return str(name)
    target = cache_dir() / "models" / f"{DEFAULT_BASE}-v1"
    if not (target / "config.json").is_file():
        build_default(target)
    return str(target)


def use_bert_tokens_for_generation(model, tokenizer) -> None:
    """BERT has no generation tokens of its own: [CLS] starts the answer, [SEP] ends it."""
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.cls_token_id
        config.bos_token_id = tokenizer.cls_token_id
        config.eos_token_id = tokenizer.sep_token_id
        config.pad_token_id = tokenizer.pad_token_id


def build_default(target: Path) -> None:
    """Warm-start the encoder-decoder and save it with its tokenizer; written to a temporary folder
    first, so a failed or concurrent build never leaves a half-written model behind."""
    import torch
    from transformers import AutoTokenizer, EncoderDecoderModel
    from transformers.utils import logging as hf_logging

    from journeys.embedding import resolve_model

    encoder_path, _ = resolve_model("default")
    target.parent.mkdir(parents=True, exist_ok=True)
    state = torch.random.get_rng_state()
    verbosity = hf_logging.get_verbosity()
    # The load report lists the cross-attention weights as missing: expected, they start random here.
    hf_logging.set_verbosity_error()
    torch.manual_seed(_BUILD_SEED)
    try:
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_path, encoder_path)
    finally:
        torch.random.set_rng_state(state)
        hf_logging.set_verbosity(verbosity)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path)
    use_bert_tokens_for_generation(model, tokenizer)
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        model.save_pretrained(building)
        tokenizer.save_pretrained(building)
        try:
            building.rename(target)
        except OSError:  # another process finished first: keep theirs
            pass
    finally:
        shutil.rmtree(building, ignore_errors=True)
