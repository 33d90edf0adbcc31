"""The recipe of the namer adapter that ships in the package, as one command.

    python -m tuning.namer_adapter --movielens_src PATH/ml-latest-small --out journeys/packaged_adapters/smollm2-namer

It rebuilds everything from sources anyone can get: the synthetic sample (200 users, seed 0, as
`journeys sample` writes it), MovieLens ml-latest-small converted as `journeys convert movielens`
does, and the training pairs of `journeys tune pairs` (the exemplar bank, the sample's *train*
topics, MovieLens user tags of the train split; the held-out test topics never). Then LoRA on the
default LLM, with fixed seeds and one torch thread, so that the weights file comes out bit for bit
the same: the SHA-256 it prints must equal ``journeys.adapters.REGISTRY[...].sha256``. ``--base``
tunes another registered LLM on the same data (another adapter, not the shipped one).

Only what the namer needs is kept (the LoRA weights, PEFT's config, ``journeys_adapter.json``): the
tokenizer is the base model's own, which ships in the model's package. The base model is recorded
by its registered name, not by the local cache folder it was loaded from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

# Sized for a 2-core machine: about 10-15 minutes, most of it the optimiser steps (about 4-5 s each
# on one thread). One thread, because a different thread count sums in a different order and the
# weights would differ in their last bits.
STEPS = 150
THREADS = 1
VALIDATION_SHARE = 0.05
KEPT_FILES = ("adapter_model.safetensors", "adapter_config.json", "journeys_adapter.json")


def build(movielens_src: str, out: str, steps: int = STEPS, base: str | None = None,
          torch_threads: int = THREADS) -> dict:
    """The adapter of ``steps`` LoRA steps on ``base`` (default: the default LLM) written to ``out``;
    only the defaults reproduce the shipped file."""
    from journeys import io, llms
    from journeys.movielens import convert
    from journeys.sample.generator import SampleConfig, generate
    from tuning.pairs import build_pairs
    from tuning.train import TuneConfig, train

    base = base or llms.DEFAULT_LLM
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        sample = generate(SampleConfig())
        for name in ("items", "truth"):
            io.write_table(getattr(sample, name), str(work / f"{name}.parquet"))
        convert(movielens_src, str(work / "ml"))
        pairs, counts = build_pairs(truth=str(work / "truth.parquet"), items=str(work / "items.parquet"),
                                    user_tags=str(work / "ml" / "user_tags.parquet"),
                                    movielens_items=str(work / "ml" / "items.parquet"))
        config = TuneConfig(method="lora", base=base, steps=steps, validation_share=VALIDATION_SHARE,
                            seed=0)
        result = train(pairs, config, str(work / "adapter"), torch_threads=torch_threads)
        target = Path(out)
        target.mkdir(parents=True, exist_ok=True)
        for name in KEPT_FILES:
            source = work / "adapter" / name
            if name == "adapter_config.json":  # PEFT writes the local folder it loaded the base from
                peft_config = json.loads(source.read_text(encoding="utf-8"))
                peft_config["base_model_name_or_path"] = base
                # PEFT keeps the target modules as a set, written in hash order: sorted, the file
                # comes out the same on every run too.
                peft_config["target_modules"] = sorted(peft_config["target_modules"])
                (target / name).write_text(json.dumps(peft_config, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
            else:
                shutil.copyfile(source, target / name)
    return {"out": out, "base": base, "pairs": counts, "steps": steps, "torch_threads": torch_threads,
            "metrics": result.metadata["metrics"], "training_seconds": result.training_seconds,
            "wall_seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(time.process_time(), 1),
            "sha256": llms.file_sha256(target / "adapter_model.safetensors")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens_src", required=True, help="the unpacked ml-latest-small folder (ratings.csv...)")
    parser.add_argument("--out", required=True, help="folder to write the adapter to")
    parser.add_argument("--steps", type=int, default=STEPS, help="optimiser steps of 8 pairs (the shipped one: "
                        f"{STEPS}; another number gives another adapter)")
    parser.add_argument("--base", default=None, help="registered LLM to tune (default and the shipped one: "
                        "the default LLM; another gives another adapter, e.g. gemma-3-270m)")
    parser.add_argument("--torch_threads", type=int, default=THREADS, help=f"the shipped one: {THREADS}; "
                        "another count sums in another order, so the weights differ in their last bits")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(json.dumps(build(args.movielens_src, args.out, args.steps, args.base, args.torch_threads), indent=2))


if __name__ == "__main__":
    main()
