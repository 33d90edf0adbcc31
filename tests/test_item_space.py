"""The item representation's blocks: exact centring of the sparse tags block, order-free catalogue
statistics, weights, given vectors, and their checks before any work."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from journeys.centring import mean_from_fixed, to_fixed
from journeys.inputs import InputError, check_vectors
from journeys.item_space import (
    ItemSpace,
    TagSpace,
    parse_blocks,
    parse_weights,
    sessions_of,
    tag_terms,
    unit_vector,
)
from journeys.model import Item
from journeys.validation import validate_item, validate_item_vector

ITEMS = [
    Item("a", "Alien", ("Sci-Fi", "Horror", "Ridley Scott"), "Sci-Fi"),
    Item("b", "Blade Runner", ("Sci-Fi", "Ridley Scott")),
    Item("c", "Annie Hall", ("Comedy", "Woody Allen"), "Comedy"),
    Item("d", "Manhattan", ("Comedy", "Romance", "Woody Allen")),
    Item("e", "Untagged film"),
]


def _dense_centred(space: TagSpace, items: list[Item]) -> np.ndarray:
    """The tags block written out over the whole vocabulary, the plain way."""
    index = {t: i for i, t in enumerate(space.terms)}
    rows = np.zeros((len(items), len(space.terms)))
    for row, item in enumerate(items):
        terms = tag_terms(item)
        if not terms:
            continue
        weights = np.zeros(len(space.terms))
        for term in terms:
            from journeys.item_space import idf
            weights[index[term]] = idf(space.document_frequency[index[term]], space.tagged_items)
        rows[row] = weights / np.linalg.norm(weights) - space.mean
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def test_the_compact_tags_block_gives_the_same_cosines_as_the_whole_centred_space():
    space = TagSpace.fit(ITEMS)
    assert space.terms == tuple(sorted({"sci-fi", "horror", "ridley scott", "comedy", "woody allen", "romance"}))
    for subset in (ITEMS, ITEMS[:2], [ITEMS[0], ITEMS[2], ITEMS[4]]):
        compact, dense = space.block(subset), _dense_centred(space, subset)
        np.testing.assert_allclose(compact @ compact.T, dense @ dense.T, atol=1e-9)
    block = space.block(ITEMS)
    assert not block[4].any()  # no tags: an empty block, not a vector shared by every untagged item
    assert block[0] @ block[1] > 0.3 > block[0] @ block[2]  # a shared director and genre bring films close


def test_catalogue_statistics_do_not_depend_on_item_order():
    forward, backward = TagSpace.fit(ITEMS), TagSpace.fit(list(reversed(ITEMS)))
    assert forward.describe() == backward.describe()
    assert forward.mean.tobytes() == backward.mean.tobytes()


def test_the_cosine_of_two_items_is_the_weighted_mean_of_their_blocks():
    rng = np.random.default_rng(0)
    text = rng.normal(size=(4, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    given = [tuple(rng.normal(size=5)) for _ in range(4)]
    mean = mean_from_fixed(sum(to_fixed(unit_vector(v)) for v in given), 4)
    items = [it._replace(embedding=v) for it, v in zip(ITEMS[:4], given)]
    space = ItemSpace(("text", "tags", "embedding"), {"tags": 2.0}, None, TagSpace.fit(items), mean)
    rows = space.vectors(items, text, given)
    tags = space.tag_space.block(items)
    centred = np.stack([unit_vector(v) for v in given]) - mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    expected = (1 * text @ text.T + 2 * tags @ tags.T + 1 * centred @ centred.T) / 4
    np.testing.assert_allclose(rows @ rows.T, expected, atol=1e-5)
    text_only = ItemSpace(("text",), {}, None)
    assert text_only.vectors(items, text).tobytes() == text.tobytes()  # as before blocks existed


def test_describe_records_blocks_dimensions_weights_and_hashes():
    space = ItemSpace(("text", "tags"), {"tags": 0.5}, np.zeros(8, dtype=np.float32), TagSpace.fit(ITEMS))
    described = space.describe(text_dimension=8)
    assert [b["name"] for b in described["blocks"]] == ["text", "tags"]
    assert described["blocks"][1]["weight"] == 0.5 and described["blocks"][1]["dimension"] == 6
    assert len(described["blocks"][1]["sha256"]) == 64


@pytest.mark.parametrize("text, message", [("text,words", "unknown block 'words'"), (",", "unknown block")])
def test_bad_block_options_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_blocks(text)
    assert parse_blocks("tags, text,tags") == ("tags", "text")
    assert parse_weights("text=1, tags=0.5") == {"text": 1.0, "tags": 0.5}
    for bad in ("tags", "tags=-1", "words=1", "tags=x"):
        with pytest.raises(ValueError, match="--block_weights"):
            parse_weights(bad)


@pytest.mark.parametrize("value, reason", [
    ("not a list", "bad_vector"), ([1.0, float("nan")], "bad_vector"), ([1.0, "x"], "bad_vector"),
    ([0.0, 0.0], "bad_vector"), ([], "bad_vector"),
])
def test_a_bad_item_vector_goes_to_the_dead_letters_with_a_reason(value, reason):
    item, dead = validate_item({"item_id": "i1", "title": "T", "embedding": value})
    assert item is None and dead.reason == reason and dead.item_id == "i1"
    _, dead = validate_item_vector({"item_id": "i1", "embedding": value})
    assert dead.reason == reason and dead.source == "item_vectors"


def test_a_missing_vector_is_a_dead_letter_only_when_the_embedding_block_is_used():
    row = {"item_id": "i1", "title": "T", "embedding": None}
    assert validate_item(row)[0].embedding is None
    item, dead = validate_item(row, require_vector=True)
    assert item is None and dead.reason == "missing_vector"
    item, _ = validate_item({"item_id": "i1", "title": "T", "embedding": "[1, 2.5]"})  # a JSON list in a CSV cell
    assert item.embedding == (1.0, 2.5)


def test_vectors_of_different_lengths_or_not_numbers_stop_the_run_naming_the_file(tmp_path):
    good = tmp_path / "items" / "a.parquet"
    good.parent.mkdir()
    pq.write_table(pa.table({"item_id": ["1", "2"], "title": ["x", "y"], "embedding": [[0.1, 0.2], [0.3, None]]}),
                   good)
    assert check_vectors(str(good.parent), "items") == 2
    longer = tmp_path / "items" / "b.jsonl"
    longer.write_text(json.dumps({"item_id": "3", "title": "z", "embedding": [1, 2, 3]}) + "\n")
    with pytest.raises(InputError, match=r"b\.jsonl.*3 values, others 2"):
        check_vectors(str(good.parent), "items")
    words = tmp_path / "words.parquet"
    pq.write_table(pa.table({"item_id": ["1"], "title": ["x"], "embedding": [["a", "b"]]}), words)
    with pytest.raises(InputError, match=r"words\.parquet.*not a list of numbers"):
        check_vectors(str(words), "items")
    assert check_vectors(str(tmp_path / "items" / "a.parquet"), "items") == 2


def test_sittings_are_told_apart_by_pauses_of_more_than_an_hour():
    minute = 60 * 1_000_000
    firsts = [0, 10 * minute, 200 * minute, 5 * minute, 259 * minute, 330 * minute]
    assert sessions_of(firsts) == [0, 0, 1, 0, 1, 2]


def test_the_sessions_block_joins_only_histories_judged_by_the_log_rule():
    text = np.eye(4, dtype=np.float32)
    space = ItemSpace(("text", "sessions"), {}, None)
    assert space.vectors(ITEMS[:4], text).tobytes() == text.tobytes()  # no sittings given: text alone
    rows = space.vectors(ITEMS[:4], text, sessions=[0, 0, 1, 1])
    share = 0.35 / 1.35  # the sessions block's default weight against text's 1
    np.testing.assert_allclose((rows @ rows.T)[0, 1], share, atol=1e-6)  # same sitting, unrelated text
    np.testing.assert_allclose((rows @ rows.T)[0, 2], 0.0, atol=1e-6)
