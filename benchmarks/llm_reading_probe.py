"""How long the built-in LLM's decoder takes to learn to *read its context*, from scratch, on CPU.

Every UQABench question answered from a text history needs two skills: find what the question is
about in the history (in-context matching), and answer with the letter of the option it picked
(symbol binding). This probe trains the built-in LLM's shape (``LlmConfig``: a Qwen2-style decoder,
width 128, 2 layers by default) on the two skills in their barest form, over abstract symbols, and
reports how many steps each takes to learn, against the size of the symbol vocabulary and the scale
of the initial weights:

- ``presence``: ``<s> h1 .. hN ? x =`` -> ``yes`` when the symbol x is among h1..hN, else ``no``
  (x is drawn from the history half of the time); chance is about 0.5;
- ``choice``: ``<s> h1 .. hN ? A o1 B o2 C o3 D o4 =`` -> the letter of the one option that is in
  the history (the three others are not): the shape of the question set's ``direct_feature``
  sub-task with one-symbol items; chance is 0.25.

Each setting trains on fresh random batches (32 per step, AdamW, learning rate ``--learning_rate``)
and is scored every ``--eval_every`` steps on a fixed held-out set of 512 examples; "learned at" is
the first step where held-out accuracy reaches 0.9. Settings run in parallel processes
(``--workers``), one torch thread each; same seed, same figures.

    python benchmarks/llm_reading_probe.py                   # the default grid, about 6 minutes on 2 cores
    python benchmarks/llm_reading_probe.py --vocab 50 --init_std 0.1 --tasks choice --steps 6000
"""

from __future__ import annotations

import argparse
import itertools
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

PAD, BOS, YES, NO, ASK, EQUALS = 0, 1, 2, 3, 4, 5
LETTERS = (6, 7, 8, 9)
FIRST_SYMBOL = 10
LEARNED = 0.9


def example(task: str, rng: np.random.Generator, vocab: int, history: int) -> tuple[list[int], int]:
    symbols = rng.integers(FIRST_SYMBOL, FIRST_SYMBOL + vocab, size=history)
    seen = set(symbols.tolist())
    if task == "presence":
        x = int(symbols[rng.integers(history)]) if rng.random() < 0.5 else int(rng.integers(FIRST_SYMBOL,
                                                                                           FIRST_SYMBOL + vocab))
        return [BOS, *symbols.tolist(), ASK, x, EQUALS], YES if x in seen else NO
    unseen = [s for s in rng.permutation(np.arange(FIRST_SYMBOL, FIRST_SYMBOL + vocab)).tolist() if s not in seen][:3]
    gold = int(rng.integers(4))
    options = unseen[:gold] + [int(symbols[rng.integers(history)])] + unseen[gold:]
    prompt = [BOS, *symbols.tolist(), ASK]
    for letter, option in zip(LETTERS, options):
        prompt += [letter, option]
    return prompt + [EQUALS], LETTERS[gold]


def batch(task: str, rng: np.random.Generator, vocab: int, history: int, size: int):
    rows = [example(task, rng, vocab, history) for _ in range(size)]
    return torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])


def run_setting(setting: dict) -> dict:
    from tuning.uqa_llm import LlmConfig, build_decoder

    torch.set_num_threads(1)
    task, vocab, history = setting["task"], setting["vocab"], setting["history"]
    config = LlmConfig(hidden=setting["hidden"], layers=setting["layers"], heads=setting["heads"],
                       init_std=setting["init_std"], seed=setting["seed"])
    model = build_decoder(FIRST_SYMBOL + vocab, config, bos=BOS, pad=PAD)
    optimiser = torch.optim.AdamW(model.parameters(), lr=setting["learning_rate"], weight_decay=0.01)
    train_rng = np.random.default_rng([setting["seed"], 0])
    held_ids, held_labels = batch(task, np.random.default_rng([setting["seed"], 1]), vocab, history, 512)
    learned_at, accuracy, started = None, 0.0, time.perf_counter()
    for step in range(1, setting["steps"] + 1):
        ids, labels = batch(task, train_rng, vocab, history, 32)
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids, logits_to_keep=1).logits[:, -1], labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % setting["eval_every"] == 0 or step == setting["steps"]:
            with torch.no_grad():
                predicted = model(input_ids=held_ids, logits_to_keep=1).logits[:, -1].argmax(-1)
            accuracy = float((predicted == held_labels).float().mean())
            if learned_at is None and accuracy >= LEARNED:
                learned_at = step
                break
    return {**setting, "learned_at": learned_at, "accuracy": round(accuracy, 3),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="presence,choice")
    parser.add_argument("--vocab", default="50,500", help="symbol vocabulary sizes")
    parser.add_argument("--init_std", default="0.02,0.1", help="initial weight scales (0.02 is Qwen2's)")
    parser.add_argument("--history", type=int, default=8, help="history symbols per example")
    parser.add_argument("--steps", type=int, default=3000, help="most training steps per setting")
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = [
        {"task": task, "vocab": int(vocab), "init_std": float(std), "history": args.history, "steps": args.steps,
         "eval_every": args.eval_every, "learning_rate": args.learning_rate, "hidden": args.hidden,
         "layers": args.layers, "heads": args.heads, "seed": args.seed}
        for task, vocab, std in itertools.product(args.tasks.split(","), args.vocab.split(","),
                                                  args.init_std.split(","))
    ]
    print(f"decoder: width {args.hidden}, {args.layers} layers, {args.heads} heads; batch 32, learning rate "
          f"{args.learning_rate}; history {args.history} symbols; learned = held-out accuracy >= {LEARNED}\n")
    print("| task | vocabulary | init std | learned at step | held-out accuracy (chance) | seconds |")
    print("|---|---|---|---|---|---|")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for result in pool.map(run_setting, settings):
            chance = 0.5 if result["task"] == "presence" else 0.25
            learned = result["learned_at"] if result["learned_at"] else f"not within {result['steps']}"
            print(f"| {result['task']} | {result['vocab']} | {result['init_std']} | {learned} | "
                  f"{result['accuracy']:.3f} ({chance}) | {result['seconds']} |", flush=True)


if __name__ == "__main__":
    main()
