"""Tiny generative models built from a config: the real code paths (generate, PEFT prompt tuning,
LoRA, save and reload) in a fraction of a second.

The Llama and Gemma 3 models have the architectures of the two packaged LLMs (the same module names,
so LoRA targets the same projections) with a byte-level BPE tokenizer trained here on the exemplar
bank; the GPT-2 one uses the packaged MiniLM WordPiece vocabulary.
"""

from __future__ import annotations

import json

import torch
from transformers import (
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from journeys.embedding import resolve_model
from prompts import EXEMPLARS


def _minilm_tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("default")[0])


def trained_tokenizer(vocab_size: int = 800) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer learned from the exemplar bank: any text encodes, nothing downloads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = []
    with open(EXEMPLARS, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts += [*row["titles"], row["name"], " ".join(row["keywords"])]
    texts += ["Items: Keywords: Name: The interest these items share, in 2 to 5 words."]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def _save(model, tokenizer, path: str) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_llama(path: str) -> str:
    """The shape of SmolLM2 (LlamaForCausalLM), 1 layer of width 32."""
    torch.manual_seed(0)
    tokenizer = trained_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    return _save(LlamaForCausalLM(config), tokenizer, path)


def tiny_gemma(path: str) -> str:
    """The shape of Gemma 3 270M (Gemma3ForCausalLM), 2 layers of width 32."""
    torch.manual_seed(0)
    tokenizer = trained_tokenizer()
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=1024, sliding_window=64,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    return _save(Gemma3ForCausalLM(config), tokenizer, path)


def tiny_causal(path: str) -> str:
    """A GPT-2 decoder, 1 layer of width 32, with the MiniLM vocabulary."""
    torch.manual_seed(0)
    tokenizer = _minilm_tokenizer()
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=600, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    return _save(GPT2LMHeadModel(config), tokenizer, path)
