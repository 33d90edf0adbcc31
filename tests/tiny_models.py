"""Tiny generative models built from a config, with the packaged MiniLM WordPiece vocabulary: the
real code paths (generate, PEFT prompt tuning, LoRA, save and reload) in a fraction of a second."""

from __future__ import annotations

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GPT2Config,
    GPT2LMHeadModel,
)

from journeys.embedding import resolve_model
from journeys.naming.base_model import use_bert_tokens_for_generation


def _tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model("default")[0])


def tiny_seq2seq(path: str) -> str:
    """A BERT-to-BERT encoder-decoder, the shape of the built-in base, 1 layer of width 32."""
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    size = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=512)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**size), BertConfig(**size, is_decoder=True, add_cross_attention=True))
    model = EncoderDecoderModel(config=config)
    use_bert_tokens_for_generation(model, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_causal(path: str) -> str:
    """A GPT-2 decoder, 1 layer of width 32, answering after the prompt."""
    torch.manual_seed(0)
    tokenizer = _tokenizer()
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=600, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
