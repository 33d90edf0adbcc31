"""How user embeddings reach a frozen LLM (User-LLM's integration modes), and the wrapper that runs it.

A user source gives per-step states ``[B, L, D]`` with a mask ``[B, L]`` (a sequence encoder's
states over the last L interactions; a one-vector encoder such as the journey encoder gives L = 1).
An adapter turns them into something the LLM reads:

- ``soft`` (``SoftPrompt``): project to the LLM width and mean-pool over the steps into ``k`` soft
  tokens placed **first**, before the prompt's tokens. ``k = 1`` is UQABench's adapter (a linear
  map, one mean-pooled token); ``k > 1`` gives the LLM more room for the same summary.
- ``words`` (``tuning.word_prompt.WordPrompt``): ``k`` soft tokens, each a mix of the LLM's own
  word embeddings weighted by how close each word's meaning is to the user vector: a prompt the LLM
  can read before any training.
- ``perceiver`` (``PerceiverResampler``): M learned latent queries cross-attend to the projected
  steps (and to themselves, as in Flamingo) and are placed first like a soft prompt: the sequence,
  however long, is compressed to M tokens.
- ``xattn`` (``CrossAttentionAdapter``): gated cross-attention blocks after the LLM's decoder
  layers, attending to the projected steps. Each block's output is scaled by ``tanh(gate)`` with the
  gates initialised at zero, so before training the frozen model's outputs are exactly unchanged
  (the prompt costs no extra tokens at all).

``UserLLM`` runs a causal LM with one of these (or none: the text-prompt and no-history
baselines) on left-padded prompts, computes logits for the prompt's positions (soft tokens are
dropped from the output, so labels line up with the ids), decodes greedily, and scores several
continuations of each prompt (the option answers) with the prompt run once and its keys and values
shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from journeys.llms import cache_keyword
from tuning.uqa_llm import masked_mean, positions, right_pad

MODES = ("soft", "words", "perceiver", "xattn")


@dataclass(frozen=True)
class AdapterConfig:
    mode: str = field(default="soft", metadata={"help": f"integration mode: {', '.join(MODES)}"})
    soft_tokens: int = field(default=1, metadata={"help": "soft, words: tokens (1 = UQABench's one mean-pooled token)"})
    word_temperature: float = field(default=0.03, metadata={
        "help": "words: starting softmax temperature over the cosine of a query and the vocabulary's words"})
    word_lead: str = field(default="User interests:", metadata={
        "help": "words: text put before the word tokens (empty: none)"})
    latents: int = field(default=4, metadata={"help": "perceiver: latent tokens M the sequence is compressed to"})
    perceiver_layers: int = field(default=1, metadata={"help": "perceiver: resampler layers"})
    xattn_every: int = field(default=1, metadata={"help": "xattn: a gated block after every N-th decoder layer"})
    adapter_heads: int = field(default=4, metadata={"help": "perceiver / xattn: attention heads"})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown integration mode '{self.mode}': choose one of {', '.join(MODES)}")
        if min(self.soft_tokens, self.latents, self.perceiver_layers, self.xattn_every, self.adapter_heads) < 1:
            raise ValueError("soft_tokens, latents, perceiver_layers, xattn_every and adapter_heads must be >= 1")
        if not self.word_temperature > 0:
            raise ValueError("word_temperature must be positive")


class SoftPrompt(nn.Module):
    prefix = True

    def __init__(self, width: int, hidden: int, tokens: int):
        super().__init__()
        self.tokens, self.hidden = tokens, hidden
        self.project = nn.Linear(width, tokens * hidden)
        self.prefix_length = tokens  # positions the prompt takes

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # a linear map commutes with the mean: pool first, then project (cheaper, same result)
        return self.project(masked_mean(states, mask)).view(states.shape[0], self.tokens, self.hidden)


class _AttentionBlock(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.norm, self.context_norm, self.ff_norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))

    def attend(self, x, context, context_mask):
        context = self.context_norm(context)
        return self.attention(self.norm(x), context, context, key_padding_mask=~context_mask, need_weights=False)[0]


class PerceiverResampler(nn.Module):
    prefix = True

    def __init__(self, width: int, hidden: int, latents: int, layers: int, heads: int):
        super().__init__()
        self.project = nn.Linear(width, hidden)
        self.latents = nn.Parameter(torch.randn(latents, hidden) * 0.02)
        self.prefix_length = latents
        self.blocks = nn.ModuleList(_AttentionBlock(hidden, heads) for _ in range(layers))
        self.norm, self.out = nn.LayerNorm(hidden), nn.Linear(hidden, hidden)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        steps = self.project(states)
        latents = self.latents.expand(states.shape[0], -1, -1)
        always = torch.ones(latents.shape[:2], dtype=torch.bool, device=mask.device)
        for block in self.blocks:
            # latents read the steps and each other (Flamingo's resampler): keys = steps + latents
            context = torch.cat([steps, latents], dim=1)
            latents = latents + block.attend(latents, context, torch.cat([mask.bool(), always], dim=1))
            latents = latents + block.ff(block.ff_norm(latents))
        return self.out(self.norm(latents))


class GatedCrossAttention(_AttentionBlock):
    def __init__(self, hidden: int, heads: int):
        super().__init__(hidden, heads)
        self.attention_gate = nn.Parameter(torch.zeros(1))
        self.ff_gate = nn.Parameter(torch.zeros(1))

    def forward(self, x, context, context_mask):
        x = x + torch.tanh(self.attention_gate) * self.attend(x, context, context_mask)
        return x + torch.tanh(self.ff_gate) * self.ff(self.ff_norm(x))


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Hugging Face causal LM (Qwen2/LLaMA/Mistral, GPT-2, GPT-NeoX), also
    inside a PEFT (LoRA) wrapper."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        found = model
        for name in path.split("."):
            found = getattr(found, name, None)
            if found is None:
                break
        if isinstance(found, nn.ModuleList):
            return found
    raise ValueError(f"cross-attention cannot find the decoder layers of {type(model).__name__}: "
                     "supported are models with model.layers (Qwen2, LLaMA), transformer.h (GPT-2) or gpt_neox.layers")


class CrossAttentionAdapter(nn.Module):
    prefix = False
    prefix_length = 0  # reads the user inside the decoder, not in the prompt

    def __init__(self, width: int, hidden: int, layers: int, every: int, heads: int):
        super().__init__()
        self.project = nn.Linear(width, hidden)
        self.where = [i for i in range(layers) if (i + 1) % every == 0] or [layers - 1]
        self.blocks = nn.ModuleList(GatedCrossAttention(hidden, heads) for _ in self.where)
        self._context = None
        self._hooks = []

    def attach(self, llm: nn.Module) -> None:
        layers = decoder_layers(llm)
        for block, index in zip(self.blocks, self.where):
            self._hooks.append(layers[index].register_forward_hook(self._hook(block)))

    def _hook(self, block):
        def after_layer(module, args, output):
            if self._context is None:  # the LLM run without a user: unchanged
                return output
            context, mask = self._context
            if isinstance(output, tuple):
                return (block(output[0], context, mask), *output[1:])
            return block(output, context, mask)
        return after_layer

    def set_context(self, states: torch.Tensor | None, mask: torch.Tensor | None) -> None:
        self._context = None if states is None else (self.project(states), mask.bool())


def build_adapter(config: AdapterConfig, width: int, hidden: int, llm_layers: int, llm: nn.Module | None = None,
                  tokenizer=None) -> nn.Module:
    """The adapter of ``config``; the ``words`` mode also needs the LLM and its tokenizer (its vocabulary)."""
    if width < 1:
        raise ValueError("the user embeddings have no values")
    if config.mode == "soft":
        return SoftPrompt(width, hidden, config.soft_tokens)
    if config.mode == "words":
        if llm is None or tokenizer is None:
            raise ValueError("the words mode builds its prompt from the LLM's vocabulary: give the LLM and tokenizer")
        from tuning.word_prompt import build_word_prompt  # loads the sentence encoder

        return build_word_prompt(width, config.soft_tokens, config.word_temperature, config.word_lead, llm,
                                 tokenizer)
    if hidden % config.adapter_heads:
        raise ValueError(f"the LLM width {hidden} is not divisible by --adapter_heads {config.adapter_heads}")
    if config.mode == "perceiver":
        return PerceiverResampler(width, hidden, config.latents, config.perceiver_layers, config.adapter_heads)
    return CrossAttentionAdapter(width, hidden, llm_layers, config.xattn_every, config.adapter_heads)


def llm_width(llm: nn.Module) -> int:
    return llm.get_input_embeddings().embedding_dim


def llm_layers(llm: nn.Module) -> int:
    return len(decoder_layers(llm))


class UserLLM(nn.Module):
    """A causal LM with an optional adapter. ``forward`` returns logits for the token positions only."""

    def __init__(self, llm: nn.Module, adapter: nn.Module | None = None):
        super().__init__()
        self.llm, self.adapter = llm, adapter
        if isinstance(adapter, CrossAttentionAdapter):
            adapter.attach(llm)

    def _inputs(self, ids: torch.Tensor, mask: torch.Tensor, states: torch.Tensor | None,
                state_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The prompt's input embeddings with the user's prefix placed first (or, for cross-attention,
        the user set as the blocks' context: ``_clear`` must follow), its mask and the prefix length."""
        embeds = self.llm.get_input_embeddings()(ids)
        if self.adapter is None:
            return embeds, mask, 0
        if states is None:
            raise ValueError("this model has an adapter: give the users' states")
        if states.shape[-1] != self.adapter.project.in_features:
            raise ValueError(f"the user states are {states.shape[-1]} wide but the adapter expects "
                             f"{self.adapter.project.in_features}: use the encoder it was aligned with")
        if not self.adapter.prefix:
            self.adapter.set_context(states, state_mask)
            return embeds, mask, 0
        prefix = self.adapter(states, state_mask).to(embeds.dtype)
        ones = torch.ones(mask.shape[0], prefix.shape[1], dtype=mask.dtype, device=mask.device)
        return torch.cat([prefix, embeds], dim=1), torch.cat([ones, mask], 1), prefix.shape[1]

    def _clear(self) -> None:
        if isinstance(self.adapter, CrossAttentionAdapter):
            self.adapter.set_context(None, None)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, states: torch.Tensor | None = None,
                state_mask: torch.Tensor | None = None, keep: int | None = None) -> torch.Tensor:
        """Logits of the token positions, or of the last ``keep`` only (the answer's: computing the
        vocabulary for every prompt position is most of a small model's cost)."""
        extra = {"logits_to_keep": keep} if keep else {}
        try:
            embeds, mask, prefix_len = self._inputs(ids, mask, states, state_mask)
            logits = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask), **extra).logits
        finally:
            self._clear()
        return logits if keep else logits[:, prefix_len:]

    def continuation_log_likelihoods(self, ids: torch.Tensor, mask: torch.Tensor, continuations: list[list[int]],
                                     states: torch.Tensor | None = None, state_mask: torch.Tensor | None = None,
                                     pad_id: int = 0) -> torch.Tensor:
        """[prompts, k]: the summed log-probability of each continuation's tokens after its prompt, for
        left-padded prompts ``ids`` [P, T] and ``continuations`` grouped by prompt (k per prompt, in
        order). The prompt runs once and its keys and values are shared by its k continuations, which
        then run alone: the same figures as k full sequences (a test checks), for the prompt's cost
        once instead of k times. Gradients flow when they are enabled."""
        per_prompt = len(continuations) // ids.shape[0]
        if per_prompt < 1 or per_prompt * ids.shape[0] != len(continuations):
            raise ValueError(f"{len(continuations)} continuations do not group evenly over {ids.shape[0]} prompts")
        tokens, token_mask = right_pad(continuations, pad_id)
        try:
            embeds, mask, _ = self._inputs(ids, mask, states, state_mask)
            prompt = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions(mask),
                              use_cache=True, logits_to_keep=1)
            cache_name = cache_keyword(self.llm)
            cache = prompt[cache_name]
            cache.batch_repeat_interleave(per_prompt)
            if isinstance(self.adapter, CrossAttentionAdapter):  # the blocks read the user in every row
                self.adapter.set_context(states.repeat_interleave(per_prompt, 0),
                                         state_mask.repeat_interleave(per_prompt, 0))
            mask = mask.repeat_interleave(per_prompt, 0)
            start = positions(mask)[:, -1:] + 1
            rest = self.llm(inputs_embeds=self.llm.get_input_embeddings()(tokens),
                            attention_mask=torch.cat([mask, token_mask], 1),
                            position_ids=start + torch.arange(tokens.shape[1]), use_cache=True,
                            **{cache_name: cache}).logits
        finally:
            self._clear()
        # the prompt's last position predicts each continuation's first token, the continuation the rest
        logits = torch.cat([prompt.logits[:, -1:].repeat_interleave(per_prompt, 0), rest[:, :-1]], 1)
        picked = torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return (picked * token_mask).sum(-1).view(-1, per_prompt)

    @torch.no_grad()
    def greedy(self, ids: torch.Tensor, mask: torch.Tensor, states=None, state_mask=None, max_new_tokens: int = 1,
               eos_id: int | None = None) -> list[list[int]]:
        """Greedy decoding (the most likely token at each step) of up to ``max_new_tokens`` tokens."""
        generated = [[] for _ in range(ids.shape[0])]
        finished = [False] * ids.shape[0]
        for _ in range(max_new_tokens):
            chosen = self.forward(ids, mask, states, state_mask, keep=1)[:, -1].argmax(-1)
            for row, token in enumerate(chosen.tolist()):
                if not finished[row]:
                    if token == eos_id:
                        finished[row] = True
                    else:
                        generated[row].append(token)
            if all(finished):
                break
            ids = torch.cat([ids, chosen[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        return generated
