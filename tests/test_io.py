import json

import pyarrow as pa
import pytest

from journeys import io
from journeys.inputs import InputError, check_inputs


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_rows_are_text_and_a_malformed_line_is_reported_not_fatal(tmp_path):
    path = _write(tmp_path / "e.csv", "user_id,item_id,timestamp\nu1,i1,5\nu2,i2\nu3,i3,7\n")
    rows = list(io.iter_rows(path))
    parsed = [r for r, _ in rows if r is not None]
    problems = [p for r, p in rows if r is None]
    assert parsed == [{"user_id": "u1", "item_id": "i1", "timestamp": "5"},
                      {"user_id": "u3", "item_id": "i3", "timestamp": "7"}]
    assert len(problems) == 1 and "u2,i2" in problems[0]


def test_jsonl_bad_lines_are_reported_with_their_text(tmp_path):
    path = _write(tmp_path / "e.jsonl", '{"user_id": "u1"}\n{not json\n[1, 2]\n\n')
    rows = list(io.iter_rows(path))
    assert rows[0] == ({"user_id": "u1"}, None)
    assert rows[1][0] is None and "{not json" in rows[1][1]
    assert rows[2][0] is None and "not an object" in rows[2][1]
    assert len(rows) == 3


def test_a_folder_is_read_as_all_its_data_files_skipping_hidden_and_underscored(tmp_path):
    io.write_table(pa.table({"a": [1]}), str(tmp_path / "d" / "part-0.parquet"))
    io.write_table(pa.table({"a": [2]}), str(tmp_path / "d" / "part-1.parquet"))
    io.write_table(pa.table({"a": [3]}), str(tmp_path / "d" / "_staging" / "x.parquet"))
    assert io.read_table(str(tmp_path / "d"))["a"].to_pylist() == [1, 2]


def test_missing_column_error_names_the_column_and_the_file(tmp_path):
    events = _write(tmp_path / "events.csv", "user_id,item_id,when\nu,i,1\n")
    items = _write(tmp_path / "items.jsonl", json.dumps({"item_id": "i", "title": "t"}) + "\n")
    with pytest.raises(InputError) as err:
        check_inputs(events, items)
    assert "'timestamp'" in str(err.value) and "events.csv" in str(err.value)


def test_missing_input_and_unknown_format_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        check_inputs(str(tmp_path / "nope.parquet"), str(tmp_path / "nope2.parquet"))
    with pytest.raises(InputError, match="cannot tell the format"):
        check_inputs(_write(tmp_path / "events.txt", "x"), str(tmp_path))


def test_write_table_leaves_no_partial_file(tmp_path):
    target = str(tmp_path / "out" / "t.parquet")
    io.write_table(pa.table({"a": [1]}), target)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["t.parquet"]
