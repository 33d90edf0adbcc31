"""Namer adapters that ship inside the package, resolved by name like the packaged LLMs.

A packaged adapter is a folder of package data (LoRA weights, PEFT's config, ``journeys_adapter.json``)
made by a recipe anyone can rerun (``python -m tuning.namer_adapter``), and registered here with the
SHA-256 of its weights file. The hash is checked before any work, so a damaged or missing file stops
the command with the fix instead of loading garbage or failing halfway through a run; it is also
what every name made with the adapter records, so a name says exactly which weights made it.

Any other ``--adapter`` value is a folder written by ``journeys tune`` and passes through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from journeys.llms import file_sha256

ADAPTERS_DIR = Path(__file__).parent / "packaged_adapters"
WEIGHTS = "adapter_model.safetensors"
REINSTALL = ("reinstall the package (pip install --force-reinstall --no-deps journeys; in a source checkout, "
             "git checkout -- journeys/packaged_adapters)")


class AdapterUnavailable(ValueError):
    """A packaged adapter's files are missing or do not match the hash they were released with."""


@dataclass(frozen=True)
class PackagedAdapter:
    name: str
    base: str  # the registered LLM it was trained on
    sha256: str  # of the weights file
    recipe: str  # the command that rebuilds it, bit for bit

    @property
    def folder(self) -> Path:
        return ADAPTERS_DIR / self.name

    @property
    def identity(self) -> str:
        """What a name records as its adapter: the name and the weights' hash."""
        return f"{self.name}@sha256:{self.sha256[:16]}"


REGISTRY: dict[str, PackagedAdapter] = {
    "smollm2-namer": PackagedAdapter(
        "smollm2-namer", "smollm2-135m-instruct",
        "10367acfdc282c5d18218a4cfecdac2d40c845c763ed90dc032677238aba9ed3",
        "python -m tuning.namer_adapter --movielens_src ml-latest-small "
        "--out journeys/packaged_adapters/smollm2-namer"),
}
DEFAULT_ADAPTER = "smollm2-namer"


def is_packaged(name_or_path: str | None) -> bool:
    return name_or_path is not None and str(name_or_path) in REGISTRY


def check_packaged(entry: PackagedAdapter) -> Path:
    """The adapter's folder, once its files are there and its weights match the registered hash."""
    missing = [name for name in (WEIGHTS, "adapter_config.json", "journeys_adapter.json")
               if not (entry.folder / name).is_file()]
    if missing:
        raise AdapterUnavailable(f"the packaged namer adapter '{entry.name}' is incomplete ({', '.join(missing)} "
                                 f"missing from {entry.folder}); {REINSTALL}, or rebuild it with: {entry.recipe}; "
                                 "or name with --namer keywords")
    if file_sha256(entry.folder / WEIGHTS) != entry.sha256:
        raise AdapterUnavailable(f"the packaged namer adapter '{entry.name}' is damaged: the SHA-256 of "
                                 f"{entry.folder / WEIGHTS} is not {entry.sha256}; {REINSTALL}, or rebuild it "
                                 f"with: {entry.recipe}; or name with --namer keywords")
    return entry.folder


def resolve_adapter(name_or_path: str) -> str:
    """A folder ``journeys tune`` wrote, or a registered adapter's checked folder."""
    if is_packaged(name_or_path):
        return str(check_packaged(REGISTRY[str(name_or_path)]))
    return str(name_or_path)


def adapter_identity(name_or_path: str | None) -> str | None:
    """What names record as their adapter: ``name@sha256:...`` for a packaged one, else the folder."""
    if name_or_path is None:
        return None
    if is_packaged(name_or_path):
        return REGISTRY[str(name_or_path)].identity
    return str(name_or_path).rstrip("/")
