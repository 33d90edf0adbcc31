"""The encode pipeline: one embedding per user with the schema, every user accounted for, clear errors."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from step_outputs import write_step_output

from journeys import cli, io, schema
from journeys.inputs import InputError
from pipelines import encode
from tuning.journey_encoder import JourneyEncoder


def _encode(out: Path, *argv: str) -> dict:
    return encode.run(["--out", str(out), *argv], save_main_session=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


def test_every_user_gets_one_embedding_with_the_schema_and_reruns_are_identical(journeys_dir, small_sample,
                                                                                 tmp_path):
    summary = _encode(tmp_path / "a", "--journeys", journeys_dir, "--users", small_sample["events"])
    journeys = io.read_table(journeys_dir).to_pylist()
    with_journeys = {j["user_id"] for j in journeys}
    all_users = set(io.read_table(small_sample["events"], columns=["user_id"])["user_id"].to_pylist())
    assert with_journeys <= all_users
    table = io.read_table(str(tmp_path / "a" / "embeddings"))
    assert table.schema.equals(schema.USER_EMBEDDINGS, check_metadata=False)
    schema.check_version(table.schema, "user_embeddings", "embeddings")
    rows = table.to_pylist()
    assert [r["user_id"] for r in rows] == sorted(all_users)
    encoder = JourneyEncoder()
    assert summary["users"] == {"read": len(all_users), "encoded": len(all_users), "failed": 0, "balanced": True,
                                "with_journeys": len(with_journeys),
                                "without_journeys": len(all_users - with_journeys)}
    assert encoder.width == 2 * 384 + 7
    assert summary["encoder"] == {"name": "journey", "version": encoder.version, "width": encoder.width}
    assert summary["journeys_read"] == len(journeys) and summary["rows_rejected"] == 0
    for row in rows:
        mine = [j for j in journeys if j["user_id"] == row["user_id"]]
        expected = pa.array(encoder.encode(mine).tolist(), type=pa.float32()).to_pylist()
        assert row["embedding"] == expected and (row["encoder"], row["version"]) == ("journey", encoder.version)
    assert io.read_table(str(tmp_path / "a" / "dead_letter")).num_rows == 0

    _encode(tmp_path / "b", "--journeys", journeys_dir, "--users", small_sample["events"])
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_users_that_cannot_be_encoded_go_to_the_dead_letters_with_the_reason(journeys_dir, tmp_path):
    rows = io.read_table(journeys_dir).to_pylist()
    broken_user = rows[0]["user_id"]
    rows[0]["centroid"] = rows[0]["centroid"][:10]
    write_step_output(pa.Table.from_pylist(rows, schema=schema.JOURNEYS), tmp_path / "journeys", "part.parquet")
    users = tmp_path / "users.jsonl"
    users.write_text('{"user_id": "nobody-with-journeys"}\n{"user_id": ""}\n{oops\n')
    summary = _encode(tmp_path / "out", "--journeys", str(tmp_path / "journeys"), "--users", str(users))
    users_with_journeys = {r["user_id"] for r in rows}
    assert summary["users"]["read"] == len(users_with_journeys) + 1
    assert summary["users"]["failed"] == 1 and summary["users"]["without_journeys"] == 1
    assert summary["users"]["balanced"] and summary["rows_rejected"] == 2
    dead = io.read_table(str(tmp_path / "out" / "dead_letter")).to_pylist()
    assert sorted((d["source"], d["reason"]) for d in dead) == [
        ("journeys", "bad_centroid"), ("users", "malformed_row"), ("users", "missing_user_id")]
    bad = next(d for d in dead if d["reason"] == "bad_centroid")
    assert bad["user_id"] == broken_user and "10 values, expected 384" in bad["detail"]
    assert rows[0]["journey_id"] in json.loads(bad["row"])["journey_ids"]
    encoded = {r["user_id"] for r in io.read_table(str(tmp_path / "out" / "embeddings")).to_pylist()}
    assert encoded == (users_with_journeys - {broken_user}) | {"nobody-with-journeys"}


@pytest.mark.parametrize("case", ["missing", "wrong_dataset", "unknown_encoder", "sequence_without_model"])
def test_bad_input_is_one_clear_line_and_nothing_is_written(case, small_sample, journeys_dir, tmp_path, capsys):
    journeys = {"missing": str(tmp_path / "nope"), "wrong_dataset": small_sample["events"]}.get(case, journeys_dir)
    encoder = {"unknown_encoder": "nope", "sequence_without_model": "gru4rec"}.get(case, "journey")
    code = cli.main(["encode", "--journeys", journeys, "--out", str(tmp_path / "out"), "--encoder", encoder])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("journeys encode: error:") and "\n" not in err
    expected = {"missing": "does not exist", "wrong_dataset": "holds 'events' records, expected 'journeys'",
                "unknown_encoder": "unknown encoder 'nope'", "sequence_without_model": "needs --sequence_model"}
    assert expected[case] in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError):
        encode.run(["--journeys", journeys_dir, "--out", str(tmp_path / "o"), "--users", str(tmp_path / "none")])


# ---- sequence encoders: events in, the state after each user's last event out -----------------------

@pytest.fixture(scope="module")
def sasrec(small_sample, tmp_path_factory) -> str:
    from journeys.uqa_questions import read_inputs
    from tuning.sequence_encoders import SequenceEncoderConfig, pretrain

    folder = str(tmp_path_factory.mktemp("sasrec"))
    inputs = read_inputs(small_sample["events"], small_sample["items"])
    pretrain(inputs.events, inputs.items, SequenceEncoderConfig(dim=16, heads=2, layers=1, max_len=8, epochs=1,
                                                               dropout=0.0), out=folder)
    return folder


def test_a_sequence_encoder_embeds_each_users_last_events_and_dead_letters_what_it_cannot_read(
        sasrec, small_sample, tmp_path):
    from tuning.sequence_encoders import load_encoder
    from tuning.sequence_user_encoder import SequenceUserEncoder

    rows = io.read_table(small_sample["events"]).to_pylist()
    users = sorted({r["user_id"] for r in rows})
    bad = [{**rows[0], "item_id": "never-seen"}, {**rows[1], "timestamp": "not a time"}]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({**r, "timestamp": str(r["timestamp"])}) + "\n" for r in rows + bad))
    listed = tmp_path / "users.jsonl"
    listed.write_text('{"user_id": "no-events-yet"}\n')
    argv = ["--events", str(events), "--user_encoder", "sasrec", "--sequence_model", sasrec, "--users", str(listed)]
    summary = _encode(tmp_path / "a", *argv)

    encoder = SequenceUserEncoder("sasrec", sasrec)
    assert summary["encoder"] == {"name": "sasrec", "version": encoder.version, "width": 16}
    assert summary["users"] == {"read": len(users) + 1, "encoded": len(users) + 1, "failed": 0, "balanced": True,
                                "with_events": len(users), "without_events": 1}
    assert summary["events_read"] == len(rows) and summary["rows_rejected"] == 2
    dead = io.read_table(str(tmp_path / "a" / "dead_letter")).to_pylist()
    assert sorted(d["reason"] for d in dead) == ["bad_timestamp", "unknown_item"]
    embedded = {r["user_id"]: r["embedding"] for r in io.read_table(str(tmp_path / "a" / "embeddings")).to_pylist()}
    assert embedded["no-events-yet"] == [0.0] * 16
    # the embedding is the encoder's state after the user's last max_len events, in time order
    model, _ = load_encoder(sasrec)
    index = {item_id: i + 1 for i, item_id in enumerate(model.vocabulary.item_ids)}
    user = users[0]
    mine = sorted((r for r in rows if r["user_id"] == user), key=lambda r: (r["timestamp"], r["item_id"]))
    steps = [index[r["item_id"]] for r in mine][-8:]
    with torch.no_grad():
        expected = model.user_embedding(torch.tensor([steps]), torch.tensor([len(steps)]))[0]
    assert embedded[user] == pa.array(expected.tolist(), type=pa.float32()).to_pylist()
    assert len({tuple(v) for v in embedded.values()}) == len(embedded)  # users differ

    _encode(tmp_path / "b", *argv)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_a_sequence_encoder_refuses_the_wrong_model_or_options(sasrec, small_sample, tmp_path):
    base = ["--events", small_sample["events"], "--sequence_model", sasrec]
    with pytest.raises(ValueError, match="holds a sasrec encoder, not llama"):
        _encode(tmp_path / "a", *base, "--user_encoder", "llama")
    with pytest.raises(ValueError, match="half_life_days do not apply"):
        _encode(tmp_path / "b", *base, "--user_encoder", "sasrec", "--half_life_days", "3")
    with pytest.raises(ValueError, match="sequence_model do not apply to the journey encoder"):
        _encode(tmp_path / "c", *base)
    with pytest.raises(ValueError, match="--events is required"):
        _encode(tmp_path / "d", "--user_encoder", "sasrec", "--sequence_model", sasrec)
    assert not any((tmp_path / name).exists() for name in "abcd")
