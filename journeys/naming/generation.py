"""Loading a causal LM (with or without a tuned adapter) and batched generation: greedy, or a
few candidates from a beam search whose beams share one pass over the prompt.

Prompts are left-padded so that every prompt in a batch ends where generation starts, and truncated
from the left, so an over-long prompt loses its instruction and exemplars before it loses the question.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from journeys import adapters, llms

ADAPTER_METADATA = "journeys_adapter.json"
MAX_INPUT_TOKENS = 512


def read_adapter_metadata(adapter: str) -> dict:
    """The metadata of a folder from ``journeys tune`` or of a packaged adapter (checked first)."""
    path = Path(adapters.resolve_adapter(adapter)) / ADAPTER_METADATA
    if not path.is_file():
        raise ValueError(f"{adapter} is not a tuned namer: {ADAPTER_METADATA} is missing "
                         "(make one with `journeys tune prompt` or `journeys tune finetune`)")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class Generator:
    model: object
    tokenizer: object
    model_identity: str
    adapter_identity: str | None = None
    metadata: dict = field(default_factory=dict)
    virtual_tokens: int = 0  # prompt-tuning tokens the model prepends to every prompt
    prompt_tokens: int = 0  # running totals, for cost reports
    generated_tokens: int = 0

    def generate(self, prompts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
        """One greedy answer per prompt."""
        return [answers[0] for answers in self.generate_candidates(prompts, batch_size, max_new_tokens)]

    def generate_candidates(self, prompts: list[str], batch_size: int, max_new_tokens: int,
                            candidates: int = 1) -> list[list[str]]:
        """``candidates`` answers per prompt, best first: the greedy answer for one, else the
        ``candidates`` best beams of a beam search that wide (deterministic, like greedy)."""
        import torch

        stop = self.stop_token_ids()
        # Prompts of similar length share a batch, so little of each batch is padding; answers are
        # put back in the order of the prompts.
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        texts: dict[int, list[str]] = {}
        for start in range(0, len(prompts), batch_size):
            chunk = order[start:start + batch_size]
            batch = self.tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                                   truncation=True, max_length=MAX_INPUT_TOKENS)
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    **self._shared_prompt_cache(batch, candidates),
                    max_new_tokens=max_new_tokens, do_sample=False, num_beams=candidates,
                    num_return_sequences=candidates, eos_token_id=stop, pad_token_id=self.tokenizer.pad_token_id)
            output = output[:, batch["input_ids"].shape[1]:]  # keep only what was generated
            self.prompt_tokens += int(batch["attention_mask"].sum()) + self.virtual_tokens * len(chunk)
            self.generated_tokens += sum(_answer_length(row, stop) for row in output.tolist())
            decoded = self.tokenizer.batch_decode(output, skip_special_tokens=True)
            for position, index in enumerate(chunk):  # a prompt's answers are consecutive rows
                texts[index] = decoded[position * candidates:(position + 1) * candidates]
        return [texts[i] for i in range(len(prompts))]

    def _shared_prompt_cache(self, batch, candidates: int) -> dict:
        """For a beam search, the prompts' key/value cache computed once and copied to every beam, as
        the keyword argument ``generate`` takes it by.

        ``generate`` copies each prompt ``candidates`` times before its first forward pass, so the
        prompt (most of the work: answers are a few tokens) would be run once per beam. Here the
        prompt, all but its last token, runs once; the cache is repeated per beam, and ``generate``
        runs only the last token. In float32 the answers are those of the plain beam search; with
        int8 activations, whose scale is taken per forward pass, they can differ in the last bits.
        Nothing (``generate`` does it all) for greedy, prompt tuning (its virtual tokens are added
        inside the model) and one-token prompts."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        if candidates == 1 or self.virtual_tokens or input_ids.shape[1] < 2:
            return {}
        from transformers import DynamicCache

        # The positions generate() would give: left padding does not count.
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        keyword, cache = llms.cache_keyword(self.model), DynamicCache()
        # Only the cache is wanted: no logits over the vocabulary for every prompt token.
        keep = {"logits_to_keep": 1} if llms.forward_takes(self.model, "logits_to_keep") else {}
        self.model(input_ids=input_ids[:, :-1], attention_mask=attention_mask[:, :-1],
                   position_ids=positions[:, :-1], use_cache=True, **{keyword: cache}, **keep)
        cache.batch_repeat_interleave(candidates)  # generate() orders the beams the same way
        return {keyword: cache}

    def stop_token_ids(self) -> list[int]:
        """End of sequence, and the tokens that are a line break: a name is one line."""
        ids = [self.tokenizer.eos_token_id]
        for text in ("\n", "\n\n"):
            newline = self.tokenizer.encode(text, add_special_tokens=False)
            if len(newline) == 1 and newline[0] not in ids:
                ids.append(newline[0])
        return [i for i in ids if i is not None]


def _answer_length(row: list[int], stop: list[int]) -> int:
    """Tokens generated for one prompt, up to and including the first stop token (what follows is
    padding that a batch adds after an answer that finished early)."""
    return next((index + 1 for index, token in enumerate(row) if token in stop), len(row))


def load_base(model: str | None, torch_threads: int | None = None):
    """(model, tokenizer) for a registered name, .gguf file, folder or hub id; None is the default."""
    loaded, tokenizer = llms.load_causal_lm(model, torch_threads)
    prepare_tokenizer(tokenizer)
    return loaded, tokenizer


def prepare_tokenizer(tokenizer) -> None:
    if tokenizer.eos_token is None and getattr(tokenizer, "sep_token", None):  # WordPiece: [SEP] ends
        tokenizer.eos_token = tokenizer.sep_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"


def base_of(model: str | None, adapter: str | None) -> str | None:
    """The base model a namer runs on: ``model`` if given, else the adapter's own base."""
    if model is not None or not adapter:
        return model
    metadata = read_adapter_metadata(adapter)
    return adapters.resolve_adapter(adapter) if metadata.get("method") == "full" else metadata.get("base_model")


def load_generator(model: str | None = None, adapter: str | None = None,
                   torch_threads: int | None = None, quantize: bool = False) -> Generator:
    """The base model alone (few-shot), or with a tuned adapter folder made by ``journeys tune``.

    An adapter remembers its base model; ``model`` overrides it (e.g. the same base at another path).
    """
    import torch

    metadata = read_adapter_metadata(adapter) if adapter else {}
    folder = adapters.resolve_adapter(adapter) if adapter else None  # a packaged name: its checked folder
    base = model if model is not None else metadata.get("base_model")  # what names record as their model
    if metadata.get("method") == "full":
        # A fully fine-tuned model is a whole model: load it from the adapter folder itself.
        loaded, tokenizer = load_base(folder, torch_threads)
    else:
        loaded, tokenizer = load_base(base, torch_threads)
        if adapter:
            from peft import PeftModel

            loaded = PeftModel.from_pretrained(loaded, folder)
    loaded.eval()
    if quantize:
        loaded = quantize_int8(loaded)
    torch.manual_seed(0)
    virtual = int(metadata.get("virtual_tokens", 0)) if metadata.get("method") == "prompt" else 0
    return Generator(loaded, tokenizer, llms.model_identity(base), adapters.adapter_identity(adapter), metadata,
                     virtual)


def quantize_int8(model):
    """int8 dynamic quantisation of every Linear layer (weights stored in int8, activations quantised
    per batch), for CPU inference. A LoRA adapter is merged into the weights first, so its update is
    quantised with them rather than run as extra float matrix products. Deterministic for the same
    prompts in the same batches; an activation's scale is taken over its whole batch, so a prompt's
    answer can, rarely, depend on the prompts it is batched with."""
    import warnings

    import torch
    from peft import PeftModel, PeftType

    if isinstance(model, PeftModel) and model.active_peft_config.peft_type == PeftType.LORA:
        model = model.merge_and_unload()
    with warnings.catch_warnings():  # torch announces a successor API; this one is in the pinned torch
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
