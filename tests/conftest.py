"""Shared fixtures. Tests run offline, on CPU, with one torch thread."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Pipelines left at --torch_threads 0 (auto) follow $OMP_NUM_THREADS: one thread in tests too.
os.environ["OMP_NUM_THREADS"] = "1"
# gcsfs's experimental hierarchical-namespace support makes gRPC calls that the local GCS emulator
# cannot answer; the JSON API it falls back to is what the emulator serves.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from journeys import io  # noqa: E402
from journeys.sample.generator import SampleConfig, generate  # noqa: E402

torch.set_num_threads(1)
transformers_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory) -> dict:
    """A 12-user sample on disk: paths to events, items and truth."""
    folder = tmp_path_factory.mktemp("sample")
    data = generate(SampleConfig(users=12, seed=3, items_per_topic=10))
    paths = {name: str(folder / f"{name}.parquet") for name in ("events", "items", "truth")}
    io.write_table(data.events, paths["events"])
    io.write_table(data.items, paths["items"])
    io.write_table(data.truth, paths["truth"])
    return paths


@pytest.fixture(scope="session")
def journeys_run(small_sample, embedding_cache, tmp_path_factory) -> dict:
    """`journeys run` (extract, name, export) on the small sample, once per session: the output folder
    and the JSON line it printed. Export tests read its named/ dataset instead of re-running both."""
    import contextlib
    import io as text_io
    import json

    from journeys import cli

    out = tmp_path_factory.mktemp("run")
    printed = text_io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["run", "--events", small_sample["events"], "--items", small_sample["items"],
                         "--out", str(out), "--embedding_cache", embedding_cache, "--namer", "keywords"])
    assert code == 0
    return {"out": str(out), "named": str(out / "named" / "named"), "printed": json.loads(printed.getvalue())}


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> str:
    """One embedding cache for the whole session: each item is embedded once across all tests."""
    return str(tmp_path_factory.mktemp("embedding-cache"))


@pytest.fixture(scope="session")
def journeys_dir(journeys_run) -> str:
    """The small sample's extracted journeys/ folder (from the one `journeys run`), for naming tests."""
    return str(Path(journeys_run["out"]) / "extract" / "journeys")


GCS_BUCKET = "journeys-test"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    """A local GCS API server (gcp-storage-emulator) with one bucket; gs:// paths through gcsfs go to
    it. Yields the bucket's URL (a str) with the server's address as ``.endpoint``."""
    import fsspec
    import gcsfs
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=GCS_BUCKET)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = dict(fsspec.config.conf.get("gcs", {}))
    # Anonymous access to the emulator only: no credential lookup, so nothing leaves this machine.
    fsspec.config.conf["gcs"] = {"token": "anon", "endpoint_url": endpoint}
    gcsfs.GCSFileSystem.clear_instance_cache()
    yield GcsEmulator(f"gs://{GCS_BUCKET}", endpoint)
    fsspec.config.conf["gcs"] = saved
    gcsfs.GCSFileSystem.clear_instance_cache()
    server.stop()


class GcsEmulator(str):
    """The emulator's bucket URL (a str, so that f"{gcs}/path" works), with its HTTP endpoint."""

    def __new__(cls, url: str, endpoint: str):
        made = super().__new__(cls, url)
        made.endpoint = endpoint
        return made


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    """Paths of tiny causal models: GPT-2, and the architectures of the packaged LLMs (see tiny_models.py)."""
    from tiny_models import tiny_causal, tiny_gemma, tiny_llama

    folder = tmp_path_factory.mktemp("tiny-models")
    return {"causal": tiny_causal(str(folder / "causal")), "llama": tiny_llama(str(folder / "llama")),
            "gemma": tiny_gemma(str(folder / "gemma"))}
