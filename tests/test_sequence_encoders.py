"""Sequence encoders: causal, side information fused, deterministic pre-training, honest metrics."""

import json

import pytest
import torch

from journeys import cli, io
from journeys.sample.generator import SampleConfig, generate
from journeys.uqa_questions import cut_history, read_inputs
from tuning.sequence_encoders import (
    KINDS,
    SequenceEncoder,
    SequenceEncoderConfig,
    Vocabulary,
    load_encoder,
    pretrain,
    ranking_metrics,
    rotary,
    sequences,
)

TINY = {"dim": 16, "heads": 2, "layers": 1, "max_len": 20, "epochs": 3, "batch_size": 16, "dropout": 0.0}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seq-sample")
    data = generate(SampleConfig(users=30, seed=2, items_per_topic=6))
    paths = {"events": str(folder / "events.parquet"), "items": str(folder / "items.parquet")}
    io.write_table(data.events, paths["events"])
    io.write_table(data.items, paths["items"])
    inputs = read_inputs(paths["events"], paths["items"])
    return {**paths, "events_list": inputs.events, "items_dict": inputs.items}


@pytest.mark.parametrize("kind", KINDS)
def test_pretraining_learns_is_deterministic_and_reloads(kind, tiny, tmp_path):
    config = SequenceEncoderConfig(kind=kind, **TINY)
    model, metadata = pretrain(tiny["events_list"], tiny["items_dict"], config, str(tmp_path / kind))
    losses = metadata["metrics"]["train_loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    test = metadata["metrics"]["test"]
    assert 0 <= test["ndcg@10"] <= test["recall@10"] <= 1 and metadata["data"]["users_tested"] == 30
    again, again_meta = pretrain(tiny["events_list"], tiny["items_dict"], config)
    assert again_meta["metrics"] == metadata["metrics"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    loaded, loaded_meta = load_encoder(str(tmp_path / kind))
    assert loaded_meta["metrics"] == metadata["metrics"]
    batch = torch.tensor([[1, 5, 9, 0], [3, 3, 2, 7]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(batch), loaded(batch))


@pytest.mark.parametrize("kind", KINDS)
def test_a_step_never_sees_later_steps(kind, tiny):
    vocabulary = Vocabulary.from_items(tiny["items_dict"])
    config = SequenceEncoderConfig(kind=kind, **TINY)
    model = SequenceEncoder(config, vocabulary, *vocabulary.side_tables(tiny["items_dict"], config)).eval()
    a = torch.tensor([[4, 8, 15, 16, 23, 42]])
    b = a.clone()
    b[0, 4:] = torch.tensor([99, 7])
    with torch.no_grad():
        first, second = model(a), model(b)
    assert torch.allclose(first[0, :4], second[0, :4], atol=1e-6)
    assert not torch.allclose(first[0, 4:], second[0, 4:])


def test_each_step_fuses_the_item_id_with_tags_and_title_tokens(tiny):
    items = tiny["items_dict"]
    vocabulary = Vocabulary.from_items(items)
    config = SequenceEncoderConfig(**TINY)
    tags, tokens = vocabulary.side_tables(items, config)
    first = vocabulary.item_ids[0]
    assert [vocabulary.tags[i - 1] for i in tags[1].tolist() if i] == list(items[first].tags)[:config.max_tags]
    assert tokens[1].any()  # sample titles share words
    model = SequenceEncoder(config, vocabulary, tags, tokens).eval()
    item = torch.tensor([1])
    with torch.no_grad():
        before = model.features(item)
        model.features.tags[1] = 0
        without_tags = model.features(item)
        model.features.tokens[1] = 0
        without_either = model.features(item)
    assert not torch.allclose(before, without_tags) and not torch.allclose(without_tags, without_either)


def test_rotary_embeddings_make_attention_depend_on_relative_position():
    q = rotary(torch.ones(1, 1, 6, 8))
    k = rotary(torch.full((1, 1, 6, 8), 0.5))
    scores = (q @ k.transpose(-1, -2))[0, 0]
    for offset in range(-5, 6):
        diagonal = torch.diagonal(scores, offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    assert torch.allclose(q.norm(dim=-1), torch.ones(1, 1, 6, 8).norm(dim=-1))


def test_training_sequences_stop_at_the_history_cut(tiny):
    vocabulary = Vocabulary.from_items(tiny["items_dict"])
    config = SequenceEncoderConfig(**TINY)
    train, histories, targets = sequences(tiny["events_list"], vocabulary, config)
    index = {item_id: i + 1 for i, item_id in enumerate(vocabulary.item_ids)}
    by_user = {}
    for event in tiny["events_list"]:
        by_user.setdefault(event.user_id, []).append(event)
    for n, user in enumerate(sorted(by_user)):
        cut = cut_history(user, by_user[user], config.holdout)
        history = [index[e.item_id] for e in cut.history]
        assert train[n] == history[-(config.max_len + 1):] and histories[n] == history[-config.max_len:]
        assert targets[n] == index[cut.heldout[0].item_id]


class _FixedScores:
    """A stand-in model whose catalogue scores are given, to check the ranking arithmetic."""

    def __init__(self, scores):
        self.fixed = torch.tensor(scores, dtype=torch.float32)

    def eval(self):
        return self

    def user_embedding(self, padded, lengths):
        return torch.arange(padded.shape[0])

    def scores(self, rows):
        return self.fixed[rows]


def test_recall_and_ndcg_rank_the_target_against_the_whole_catalogue():
    # 12 items; user 0's target (item 3) is ranked first, user 1's (item 12) is 11th, user 2's second.
    scores = [[1.0 if i == 2 else 0.0 for i in range(12)],
              [float(12 - i) for i in range(12)],
              [2.0 if i == 0 else 1.0 if i == 5 else 0.0 for i in range(12)]]
    metrics = ranking_metrics(_FixedScores(scores), [[1], [1], [1]], [3, 11, 6])
    assert metrics == {"recall@10": round(2 / 3, 4), "ndcg@10": round((1 + 1 / torch.log2(torch.tensor(3.0)).item())
                                                                      / 3, 4)}


def test_pretrain_from_the_command_line(tiny, tmp_path, capsys):
    argv = ["uqabench", "pretrain", "--events", tiny["events"], "--items", tiny["items"], "--out", str(tmp_path / "e"),
            "--kind", "llama", *[x for k, v in TINY.items() for x in (f"--{k}", str(v))]]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["encoder"] == "llama" and "recall@10" in printed["test"] and printed["users_tested"] == 30
    assert (tmp_path / "e" / "sequence_encoder.pt").exists()
    assert cli.main(["uqabench", "pretrain", "--events", tiny["events"], "--items", tiny["items"], "--out",
                     str(tmp_path / "x"), "--kind", "mamba"]) == 2
    assert "unknown sequence encoder 'mamba'" in capsys.readouterr().err
