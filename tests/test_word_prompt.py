"""The words integration mode: a soft prompt of the LLM's own word embeddings, chosen by meaning."""

import sys
from pathlib import Path

import pytest
import torch

from journeys.embedding import Embedder
from tuning.uqa_adapters import AdapterConfig, build_adapter, llm_layers, llm_width
from tuning.uqa_llm import load_llm
from tuning.word_prompt import WordPrompt, vocabulary_words, word_keys

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import trained_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def test_the_vocabulary_is_whole_words_one_per_case_folded_spelling():
    tokenizer = trained_tokenizer()
    words = vocabulary_words(tokenizer)
    assert words and len({w.casefold() for _, w in words}) == len(words)
    for token_id, word in words:
        text = tokenizer.decode([token_id])
        assert text.startswith(" ") and text.strip() == word and word.isalpha() and len(word) >= 3
    # a token that is not a word after a space (punctuation, a word piece) is never taken
    assert not any(tokenizer.decode([i]).strip() in {".", ","} for i, _ in words)


def _prompt(embedder, words: list[str], width: int, tokens: int, temperature: float = 0.01):
    keys = torch.nn.functional.normalize(torch.as_tensor(embedder.encode(words)), dim=-1)
    embeddings = torch.eye(len(words))  # word i's input embedding is the i-th unit vector: mixes are readable
    return WordPrompt(width, keys, embeddings, tokens, temperature)


def test_before_training_the_tokens_are_the_words_nearest_the_journey_pools(embedder):
    words = ["bread", "baking", "racing", "cars", "knitting", "guitar"]
    d = embedder.dimension
    long_term, recent = embedder.encode(["sourdough bread baking", "formula one car racing"])
    vector = torch.as_tensor([[*long_term, *recent, 0.0, 0.0]])  # the journey encoder's layout: 2 pools + scalars
    prompt = _prompt(embedder, words, 2 * d + 2, tokens=4)
    tokens = prompt(vector[:, None, :], torch.ones(1, 1, dtype=torch.bool))
    assert tokens.shape == (1, 4, len(words))
    peaks = [words[i] for i in tokens[0].argmax(-1).tolist()]
    assert set(peaks[:2]) == {"bread", "baking"} and set(peaks[2:]) == {"racing", "cars"}  # long-term, then recent
    assert len(set(peaks)) == 4  # each token peaks on a word no earlier token took
    assert torch.allclose(tokens.sum(-1), torch.ones(1, 4))  # a mix of word embeddings


def test_the_query_map_and_temperature_train(embedder):
    prompt = _prompt(embedder, ["bread", "racing", "guitar"], 10, tokens=1, temperature=0.5)
    states = torch.randn(2, 3, 10)
    prompt(states, torch.ones(2, 3, dtype=torch.bool))[:, 0, 1].sum().backward()
    assert prompt.project.weight.grad.abs().sum() > 0 and prompt.log_temperature.grad is not None
    assert not any(name in dict(prompt.named_parameters()) for name in ("keys", "embeddings"))
    assert "keys" not in prompt.state_dict() and "embeddings" not in prompt.state_dict()  # rebuilt, not saved


def test_the_mode_is_built_from_the_llm_and_its_tokenizer(tiny_models, embedder):
    tokenizer, llm = load_llm(tiny_models["llama"])
    adapter = build_adapter(AdapterConfig(mode="words", soft_tokens=2), 12, llm_width(llm), llm_layers(llm), llm,
                            tokenizer)
    ids, _ = word_keys(tokenizer, embedder)
    assert torch.equal(adapter.embeddings, llm.get_input_embeddings().weight[torch.tensor(ids)])
    prompt = adapter(torch.randn(3, 1, 12), torch.ones(3, 1, dtype=torch.bool))
    lead = tokenizer("User interests:", add_special_tokens=False)["input_ids"]
    assert prompt.shape == (3, len(lead) + 2, llm_width(llm)) and adapter.prefix_length == len(lead) + 2
    assert torch.equal(prompt[1, :len(lead)], llm.get_input_embeddings().weight[torch.tensor(lead)])  # the text first
    bare = build_adapter(AdapterConfig(mode="words", soft_tokens=2, word_lead=""), 12, llm_width(llm),
                         llm_layers(llm), llm, tokenizer)
    assert bare.prefix_length == 2
    with pytest.raises(ValueError, match="LLM's vocabulary"):
        build_adapter(AdapterConfig(mode="words"), 12, llm_width(llm), llm_layers(llm))
    with pytest.raises(ValueError, match="word_temperature"):
        AdapterConfig(mode="words", word_temperature=0.0)


class _CountingEmbedder:
    """The real sentence encoder, counting the texts it is asked to encode."""

    def __init__(self, embedder):
        self.model_name, self.inner, self.encoded = embedder.model_name, embedder, 0

    def encode(self, texts):
        self.encoded += len(texts)
        return self.inner.encode(texts)


def test_word_keys_are_cached_on_disk_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch, embedder):
    from tuning import word_prompt

    monkeypatch.setenv("JOURNEYS_CACHE", str(tmp_path))
    monkeypatch.setattr(word_prompt, "_VOCABULARIES", {})
    tokenizer = trained_tokenizer()
    counting = _CountingEmbedder(embedder)
    ids, keys = word_keys(tokenizer, counting)
    files = list((tmp_path / "word-keys").glob("*"))
    assert counting.encoded == len(ids) and [f.suffix for f in files] == [".npy"]  # no scratch file left
    monkeypatch.setattr(word_prompt, "_VOCABULARIES", {})  # a new process: read back, nothing encoded
    again_ids, again = word_keys(tokenizer, counting)
    assert again_ids == ids and torch.equal(again, keys) and counting.encoded == len(ids)
    files[0].write_bytes(b"not an array")  # a damaged file is not used: the keys are encoded again
    monkeypatch.setattr(word_prompt, "_VOCABULARIES", {})
    _, rebuilt = word_keys(tokenizer, counting)
    assert torch.allclose(rebuilt, keys) and counting.encoded == 2 * len(ids)
    other = _CountingEmbedder(embedder)
    other.model_name = "another-encoder"  # another sentence encoder is another file
    monkeypatch.setattr(word_prompt, "_VOCABULARIES", {})
    word_keys(tokenizer, other)
    assert other.encoded == len(ids) and len(list((tmp_path / "word-keys").glob("*.npy"))) == 2
