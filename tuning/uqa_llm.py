"""The frozen LLM of the UQABench protocol: prompts, the user split, and the LLM itself.

By default the frozen LLM is a packaged pretrained one (``journeys.llms``: SmolLM2-135M-Instruct;
``gemma-3-270m`` by name; any Hugging Face causal model folder, offline hub id or ``.gguf`` file
works too), loaded by ``load_llm`` and never trained (alignment freezes it; LoRA adds weights
beside it). A pretrained model reads: it can answer from a history written out, or learn to read
a user embedding placed in its input.

``train_llm`` still builds the small from-scratch alternative (``journeys uqabench llm``): a
Qwen2-style decoder (``Qwen2Config``, default width 128, 2 layers) with a word-level tokenizer
built in code over the question set's vocabulary, trained on the **text-prompt** version of the
training users' questions (loss on the answer letter only; a share of prompts without history).
It learns the answer priors but, measured, does not learn to read a context in any affordable
number of steps, which is why it is no longer the default.

The prompt (``PromptBuilder``) is plain text, the same for every model::

    History: <title> [<tag>, <tag>] ; <title> [<tag>] ; ...      (only when history is shown)
    Question: <question>
    Options: (A) <text> (B) <text> (C) <text> (D) <text>
    Answer: (

followed by the answer's tokens (the gold letter, tokenised on its own).

Users are split once, by a hash of (seed, user id) (``split_users``): evaluation questions belong
to users whose questions were never used to train the LLM or an adapter.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from journeys.model import Item
from journeys.uqa_questions import LETTERS, interests_of

LLM_FILE = "uqa_llm.json"
SPECIALS = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"}
_WORD = re.compile(r"\w+|[^\w\s]+")  # what the tokenizer's Whitespace pre-tokenizer splits on


@dataclass(frozen=True)
class SplitConfig:
    eval_share: float = field(default=0.3, metadata={"help": "share of users held out for evaluation"})
    split_seed: int = field(default=0, metadata={"help": "seed of the user split"})

    def __post_init__(self):
        if not 0 < self.eval_share < 1:
            raise ValueError("eval_share must be in (0, 1): some users train, some evaluate")


def split_users(user_ids, config: SplitConfig) -> tuple[list[str], list[str]]:
    """(training users, evaluation users), each sorted. A user's side depends only on its id and the
    seed, so adding users never moves another one across the split."""
    train, held = [], []
    for user_id in sorted(set(user_ids)):
        digest = hashlib.sha256(f"{config.split_seed}/{user_id}".encode()).hexdigest()
        (held if int(digest[:8], 16) / 16**8 < config.eval_share else train).append(user_id)
    return train, held


@dataclass(frozen=True)
class LlmConfig:
    hidden: int = field(default=128, metadata={"help": "built-in LLM: hidden width"})
    layers: int = field(default=2, metadata={"help": "built-in LLM: decoder layers"})
    heads: int = field(default=4, metadata={"help": "built-in LLM: attention heads"})
    init_std: float = field(default=0.02, metadata={
        "help": "built-in LLM: standard deviation of the initial weights (Qwen2's 0.02; benchmarks/"
                "llm_reading_probe.py measures how it changes the steps to learn reading a context)"})
    context: int = field(default=192, metadata={"help": "prompt tokens (the text history is cut to fit)"})
    no_history_share: float = field(default=0.25, metadata={
        "help": "share of training prompts shown without history (so the model also answers from priors)"})
    question_seeds: int = field(default=2, metadata={
        "help": "also train on the training users' questions rebuilt from their histories with this many other "
                "seeds (more practice at reading a history; never an evaluation user)"})
    epochs: int = field(default=3, metadata={"help": "passes over the training questions"})
    batch_size: int = field(default=16, metadata={"help": "prompts per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "AdamW learning rate"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed and data, same weights"})

    def __post_init__(self):
        if not self.init_std > 0:
            raise ValueError("init_std must be positive")
        if self.hidden < 8 or self.layers < 1 or self.heads < 1 or self.hidden % self.heads:
            raise ValueError("need hidden >= 8, layers >= 1, heads >= 1 and hidden divisible by heads")
        if (self.hidden // self.heads) % 2:
            raise ValueError("the head width (hidden / heads) must be even for rotary embeddings")
        if self.context < 32 or self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("need context >= 32, epochs >= 1, batch_size >= 1 and learning_rate > 0")
        if self.question_seeds < 0:
            raise ValueError("question_seeds cannot be negative")
        if not 0 <= self.no_history_share <= 1:
            raise ValueError("no_history_share must be in [0, 1]")


def event_text(item: Item) -> str:
    tags = ", ".join(interests_of(item))
    return f"{item.title} [{tags}]" if tags else item.title


class PromptBuilder:
    """Question records (+ the user's history, oldest first) -> token ids, for one tokenizer."""

    def __init__(self, tokenizer, items: dict[str, Item], context: int):
        self.tokenizer, self.items, self.context = tokenizer, items, context
        self._event_tokens: dict[str, int] = {}
        self._question_tokens: dict[tuple, list[int]] = {}  # alignment re-reads the same questions every epoch

    def _special_prefix(self) -> list[int]:
        """The special tokens the tokenizer itself puts first (Gemma's <bos>; none for SmolLM2, whose
        BOS is a chat-turn marker, nor for the built-in word-level tokenizer)."""
        if not hasattr(self, "_prefix"):
            with_special = self.tokenizer("x")["input_ids"]
            plain = self.tokenizer("x", add_special_tokens=False)["input_ids"]
            self._prefix = with_special[:len(with_special) - len(plain)] if with_special[-len(plain):] == plain else []
        return self._prefix

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _event_length(self, item_id: str) -> int:
        if item_id not in self._event_tokens:
            self._event_tokens[item_id] = len(self._tokens(event_text(self.items[item_id]) + " ;"))
        return self._event_tokens[item_id]

    @staticmethod
    def question_text(question: dict) -> str:
        # "Answer: (" asks for a bare letter: after "Answer:" a pretrained model writes " A" (a space
        # first), which UQABench's starts-with rule scores as wrong; after "(" it writes "A".
        options = " ".join(f"({letter}) {question['options'][letter]}" for letter in LETTERS)
        return f"Question: {question['question']}\nOptions: {options}\nAnswer: ("

    @staticmethod
    def cloze_text(question: dict) -> str:
        """The question with no options listed: each option is then scored as the text that follows
        (``tuning.uqa_answers``); listing them would let the model copy any of them."""
        return f"Question: {question['question']}\nAnswer:"

    def history_text(self, history: list[str], budget: int) -> tuple[str, int]:
        """The most recent events whose text fits in ``budget`` tokens, oldest first; and how many."""
        kept, used = [], 0
        for item_id in reversed(history):
            cost = self._event_length(item_id)
            if used + cost > budget:
                break
            kept.append(item_id)
            used += cost
        kept.reverse()
        if not kept:
            return "", 0
        return "History: " + " ; ".join(event_text(self.items[i]) for i in kept) + " ;\n", len(kept)

    def prompt(self, question: dict, history: list[str] | None, context: int | None = None,
               options: bool = True) -> list[int]:
        """Token ids of the prompt: BOS, the history that fits (none when ``history`` is None), the
        question with its lettered options (``options``) or as a cloze. ``context`` overrides the
        builder's (the efficiency benchmark uses the whole history)."""
        context = self.context if context is None else context
        bos = self._special_prefix()
        key = question.get("question_id"), question["question"], tuple(question["options"].values()), options
        if key not in self._question_tokens:
            text = self.question_text(question) if options else self.cloze_text(question)
            self._question_tokens[key] = self._tokens(text)
        tail = self._question_tokens[key]
        head = ""
        if history:
            head, _ = self.history_text(history, context - len(bos) - len(tail) - 8)
        ids = bos + (self._tokens(head) if head else []) + tail
        if len(ids) > context:  # titles in the options can be long: drop the oldest history first
            ids = bos + ids[len(ids) - context + len(bos):]
        return ids

    def answer(self, letter: str) -> list[int]:
        """The gold letter's tokens: the loss is on the letter only."""
        return self._tokens(letter)

    def option(self, question: dict, letter: str) -> list[int]:
        """The tokens of an option's text as it would follow the cloze prompt (after a space)."""
        return self._tokens(" " + question["options"][letter])


# ---- the built-in tokenizer and decoder ------------------------------------------------------------

def build_tokenizer(items: dict[str, Item], questions: list[dict]):
    """A word-level tokenizer over every word of the catalogue and the question texts, the prompt
    template, the letters and the special tokens; case is kept, so the answer letters decode exactly."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words: set[str] = set(LETTERS) | set("0123456789")
    texts = ["History: ; [ , ]", PromptBuilder.question_text({"question": "", "options": dict.fromkeys(LETTERS, "")})]
    texts += [event_text(item) for item in items.values()]
    texts += [q["question"] + " " + " ".join(q["options"].values()) for q in questions]
    for text in texts:
        words.update(_WORD.findall(text))
    vocab = {token: i for i, token in enumerate(SPECIALS.values())}
    for word in sorted(words):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token=SPECIALS["unk"]))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces, letters stay as-is
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=SPECIALS["bos"], eos_token=SPECIALS["eos"],
                                   pad_token=SPECIALS["pad"], unk_token=SPECIALS["unk"])


def build_model(tokenizer, config: LlmConfig):
    return build_decoder(len(tokenizer), config, bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id,
                         pad=tokenizer.pad_token_id)


def build_decoder(vocab_size: int, config: LlmConfig, bos: int | None = None, eos: int | None = None,
                  pad: int | None = None):
    """A randomly initialised Qwen2-style decoder of the configured shape (seeded)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(config.seed)
    qwen = Qwen2Config(vocab_size=vocab_size, hidden_size=config.hidden, intermediate_size=2 * config.hidden,
                       num_hidden_layers=config.layers, num_attention_heads=config.heads,
                       num_key_value_heads=config.heads, max_position_embeddings=8192, tie_word_embeddings=True,
                       initializer_range=config.init_std, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    return Qwen2ForCausalLM(qwen)


def load_llm(name_or_path: str | None = None):
    """(tokenizer, model) of the frozen LLM, frozen and in eval mode: a folder from ``journeys uqabench
    llm`` (the built-in decoder), or anything ``journeys.llms`` loads: a packaged LLM by name (None is
    the default, SmolLM2-135M-Instruct), a ``.gguf`` file, a Hugging Face folder or an offline hub id."""
    if name_or_path is not None and (Path(name_or_path) / LLM_FILE).exists():
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        # The built-in word-level tokenizer must be loaded as itself: AutoTokenizer would pick the
        # tokenizer class of the model type (Qwen2's byte-level BPE) and re-read the vocabulary wrongly.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path)
    else:
        from journeys.llms import load_causal_lm

        model, tokenizer = load_causal_lm(name_or_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return tokenizer, model


def llm_name(name_or_path: str | None) -> str:
    """What the metadata records as the LLM: the packaged model's name, or the id or path as given."""
    from journeys.llms import model_identity

    return model_identity(name_or_path)


def llm_split(name_or_path: str | None) -> SplitConfig | None:
    """The user split a built-in LLM was trained with (None for any other model)."""
    path = Path(name_or_path) / LLM_FILE if name_or_path else None
    if path is None or not path.exists():
        return None
    return SplitConfig(**json.loads(path.read_text())["split"])


# ---- batches ---------------------------------------------------------------------------------------

def _padded(rows: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        columns = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, columns] = torch.tensor(row, dtype=torch.long)
        mask[i, columns] = 1
    return ids, mask


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and their attention mask: every row's last token is in the last column, so one
    greedy step appends to all rows at once."""
    return _padded(rows, pad_id, left=True)


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their mask: continuations that follow a shared prompt start in column 0."""
    return _padded(rows, pad_id, left=False)


def lm_batch(prompts: list[list[int]], answers: list[list[int]], pad_id: int):
    """(ids, attention mask, labels): prompt + answer, left-padded; only answer tokens are labelled."""
    ids, mask = left_pad([p + a for p, a in zip(prompts, answers)], pad_id)
    labels = torch.full_like(ids, -100)
    for i, answer in enumerate(answers):
        labels[i, ids.shape[1] - len(answer):] = ids[i, ids.shape[1] - len(answer):]
    return ids, mask, labels


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over the steps [B, L, D] -> [B, D] where ``mask`` [B, L] is set."""
    weights = mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)


# ---- training the built-in LLM ---------------------------------------------------------------------

def practice_questions(data: QuestionData, users: set[str], seeds: int) -> tuple[list[dict], dict[str, list[str]]]:
    """Extra training questions for ``users``: their history cut again (its own last interactions
    held out) and asked with other seeds. Returns the questions and the histories they are about."""
    from journeys.uqa_questions import BuildConfig, build_questions

    events = [e for e in data.events if e.user_id in users]
    extra, histories = [], {}
    for seed in range(1, seeds + 1):
        made = build_questions(events, data.items, BuildConfig(seed=seed))
        for question in made.questions:
            key = f"{question['user_id']}#practice"
            extra.append({**question, "user_id": key})
        for cut in made.cuts:
            histories[f"{cut.user_id}#practice"] = [e.item_id for e in cut.history]
    return extra, histories


def train_llm(data: QuestionData, config: LlmConfig, split: SplitConfig, out: str | None = None):
    """Build the tokenizer and decoder, train on the training users' text prompts, freeze, save.
    Returns (tokenizer, model, metadata)."""
    questions, items = data.questions, data.items
    train_users, eval_users = split_users({q["user_id"] for q in questions}, split)
    training = [q for q in questions if q["user_id"] in set(train_users)]
    if not training:
        raise ValueError("no training users: lower --eval_share or give more users")
    practice, practice_histories = practice_questions(data, set(train_users), config.question_seeds)
    histories = {**data.histories, **practice_histories}
    training += practice
    tokenizer = build_tokenizer(items, questions)
    model = build_model(tokenizer, config)
    builder = PromptBuilder(tokenizer, items, config.context)
    generator = torch.Generator().manual_seed(config.seed)
    hide = torch.rand(len(training), generator=generator) < config.no_history_share
    prompts = [builder.prompt(q, None if hidden else histories.get(q["user_id"], []))
               for q, hidden in zip(training, hide.tolist())]
    answers = [builder.answer(q["answer"]) for q in training]
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    losses = []
    model.train()
    for _ in range(config.epochs):
        total, steps = 0.0, 0
        for batch in torch.randperm(len(training), generator=generator).split(config.batch_size):
            ids, mask, labels = lm_batch([prompts[i] for i in batch], [answers[i] for i in batch],
                                         tokenizer.pad_token_id)
            keep = max(len(answers[i]) for i in batch) + 1  # only the answer positions need the vocabulary
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=keep).logits
            loss = answer_loss(logits, labels[:, -keep:])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(round(total / steps, 4))
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    metadata = {"config": asdict(config), "split": asdict(split),
                "data": {"train_users": len(train_users), "eval_users": len(eval_users),
                         "train_questions": len(training) - len(practice),
                         "practice_questions": len(practice), "vocabulary": len(tokenizer),
                         "prompt_tokens_mean": round(sum(map(len, prompts)) / len(prompts), 1)},
                "metrics": {"train_loss": losses}}
    if out:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (Path(out) / LLM_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return tokenizer, model, metadata


# ---- the question set with its histories ------------------------------------------------------------

@dataclass
class QuestionData:
    questions: list[dict]
    histories: dict[str, list[str]]  # user -> history item ids, oldest first (the question set's cut)
    items: dict[str, Item]
    events: list = field(default_factory=list)  # the history events themselves
    practice: list[dict] = field(default_factory=list)  # more training questions (practice.jsonl), if built


def load_question_data(questions_path: str, items_path: str) -> QuestionData:
    """The question set of ``journeys uqabench build`` (its folder or questions.jsonl), the history
    events and practice questions beside it, and the item catalogue."""
    from journeys import io
    from journeys.uqa_questions import PRACTICE_FILE, read_inputs, read_questions

    questions = read_questions(questions_path)
    folder = questions_path[:-len("questions.jsonl")].rstrip("/") if questions_path.endswith(".jsonl") \
        else questions_path
    folder = folder or "."
    practice_path = io.join(folder, PRACTICE_FILE)
    fs, local = io.url_to_fs(practice_path)
    practice = read_questions(practice_path) if fs.exists(local) else []
    inputs = read_inputs(io.join(folder, "history.parquet"), items_path)
    by_user: dict[str, list] = {}
    for event in inputs.events:
        by_user.setdefault(event.user_id, []).append(event)
    histories = {u: [e.item_id for e in sorted(es, key=lambda e: (e.ts, e.item_id))] for u, es in by_user.items()}
    lacking = sorted({q["user_id"] for q in questions} - set(histories))
    if lacking:
        raise ValueError(f"{len(lacking)} question users have no history in {folder}/history.parquet (first: "
                         f"{lacking[0]}); is --items the catalogue the question set was built from?")
    return QuestionData(questions, histories, inputs.items, inputs.events, practice)
