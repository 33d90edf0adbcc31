"""Option scoring with a shared prompt against four whole sequences per question, on the packaged LLM.

UQABench's option answers score each question's four option texts after its prompt. The plain way
runs four sequences (prompt + option) per question; ``UserLLM.continuation_log_likelihoods`` runs
the prompt once and lets its four options share its keys and values. This script times both, in
this process, on the same questions: an alignment step (forward and backward of a batch through a
one-token soft prompt, LoRA on) and evaluation (forward only), with the prompt as the embedding rows
have it (the question alone) and as the text-prompt rows have it (the history written out, cut to
``--context`` tokens). It prints the median seconds and the ratio plain / shared. Run from the
repository root:

    python benchmarks/option_scoring.py [--users 30] [--batch 8] [--repeats 5] [--torch_threads 1]
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.uqabench import median_ms  # noqa: E402
from eval.uqabench.questions import build  # noqa: E402
from journeys import io  # noqa: E402
from journeys.sample.generator import SampleConfig, generate  # noqa: E402
from journeys.uqa_questions import LETTERS, BuildConfig  # noqa: E402
from tuning.uqa_adapters import AdapterConfig, UserLLM, build_adapter, llm_layers, llm_width  # noqa: E402
from tuning.uqa_align import _lora  # noqa: E402
from tuning.uqa_answers import option_log_likelihoods  # noqa: E402
from tuning.uqa_llm import PromptBuilder, lm_batch, load_llm, load_question_data  # noqa: E402


def four_sequences(model, builder, questions, prompts, states, state_mask):
    """The plain way: each option scored in a whole sequence of its own (prompt + option)."""
    options = [builder.option(q, letter) for q in questions for letter in LETTERS]
    ids, mask, labels = lm_batch([p for p in prompts for _ in LETTERS], options, builder.tokenizer.pad_token_id)
    keep = max(map(len, options)) + 1
    logits = model(ids, mask, states.repeat_interleave(4, 0), state_mask.repeat_interleave(4, 0), keep=keep)
    log_probs = torch.log_softmax(logits[:, :-1].float(), -1)
    targets = labels[:, -keep:][:, 1:]
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (targets != -100)).sum(-1).view(len(questions), 4)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llm", default=None, help="the LLM (default: the packaged smollm2-135m-instruct)")
    parser.add_argument("--users", type=int, default=30, help="sample users the questions come from (default 30)")
    parser.add_argument("--batch", type=int, default=8, help="questions per timed call (default 8)")
    parser.add_argument("--context", type=int, default=128, help="text prompt: tokens at most (default 128)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (default 5)")
    parser.add_argument("--torch_threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory() as folder:
        sample = generate(SampleConfig(users=args.users))
        for name in ("events", "items"):
            io.write_table(getattr(sample, name), f"{folder}/{name}.parquet")
        build(f"{folder}/events.parquet", f"{folder}/items.parquet", f"{folder}/q", BuildConfig())
        data = load_question_data(f"{folder}/q", f"{folder}/items.parquet")
    tokenizer, llm = load_llm(args.llm)
    torch.manual_seed(0)
    model = UserLLM(_lora(llm, 8), build_adapter(AdapterConfig(mode="soft"), 64, llm_width(llm), llm_layers(llm)))
    builder = PromptBuilder(tokenizer, data.items, args.context)
    questions = data.questions[:args.batch]
    states, state_mask = torch.randn(len(questions), 1, 64), torch.ones(len(questions), 1, dtype=torch.bool)
    print(f"{len(questions)} questions a call, median of {args.repeats}, {args.torch_threads} thread(s)")
    print(f"{'prompt':>22} {'pass':>18} {'tokens':>7} {'four sequences s':>17} {'shared prompt s':>16} {'ratio':>6}")
    for label, history in (("question only", False), (f"text <= {args.context} tokens", True)):
        prompts = [builder.prompt(q, data.histories.get(q["user_id"], []) if history else None, options=False)
                   for q in questions]
        for kind in ("training step", "evaluation"):
            def run(score, kind=kind, prompts=prompts):
                if kind == "evaluation":
                    with torch.no_grad():
                        score(model, builder, questions, prompts, states, state_mask)
                else:
                    model.zero_grad()
                    score(model, builder, questions, prompts, states, state_mask).logsumexp(-1).sum().backward()
            plain = median_ms(lambda run=run: run(four_sequences), args.repeats) / 1000
            shared = median_ms(lambda run=run: run(option_log_likelihoods), args.repeats) / 1000
            tokens = statistics.mean(map(len, prompts))
            print(f"{label:>22} {kind:>18} {tokens:>7.1f} {plain:>17.3f} {shared:>16.3f} {plain / shared:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
