"""The Python API (journeys.api): the pipelines' own code paths and option check, with DataFrames in
and out."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pandas as pd
import pyarrow as pa
import pytest

import journeys
from journeys import io
from journeys.api import _argv, _Workspace
from pipelines.arguments import OptionError


def test_import_journeys_is_light():
    code = ("import sys, journeys; heavy = [m for m in ('apache_beam', 'torch', 'pandas', 'pipelines') "
            "if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert callable(journeys.extract) and callable(journeys.name) and callable(journeys.export)


@pytest.fixture(scope="module")
def api_run(small_sample, embedding_cache):
    """extract (events as a DataFrame, items as a path), name and export through the API."""
    events = pd.read_parquet(small_sample["events"])
    extracted = journeys.extract(events, small_sample["items"], embedding_cache=embedding_cache)
    named = journeys.name(extracted)
    exported = journeys.export(named, lineage=extracted)
    return extracted, named, exported


def _sorted(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    return frame.sort_values("journey_id")[columns].to_dict("records")


def test_the_api_gives_what_the_command_line_writes(api_run, journeys_run):
    extracted, named, exported = api_run
    out = journeys_run["out"]
    columns = ["journey_id", "user_id", "num_events", "num_items", "first_ts", "last_ts"]
    cli_journeys = io.read_table(os.path.join(out, "extract", "journeys")).to_pandas()
    assert _sorted(extracted.journeys, columns) == _sorted(cli_journeys, columns)
    cli_named = io.read_table(os.path.join(out, "named", "named")).to_pandas()
    assert _sorted(named.named, ["journey_id", "name"]) == _sorted(cli_named, ["journey_id", "name"])
    assert exported.manifest["rows"] == len(exported.labels) == len(cli_named)
    assert len(exported.lineage) == len(extracted.lineage) == extracted.summary["journeys"]
    assert extracted.summary["events"]["balanced"] and len(extracted.users) == 12
    assert list(extracted.dead_letter.columns)[:2] == ["source", "reason"]  # no rows, but the columns


def test_a_users_journeys_on_a_timeline(api_run):
    extracted, named, _ = api_run
    user = named.named["user_id"].iloc[0]
    timeline = named.timeline(user)
    svg = ElementTree.fromstring(timeline._repr_svg_())  # a well-formed, standalone SVG document
    lanes = svg.findall("{http://www.w3.org/2000/svg}rect")
    assert len(lanes) == len(named.user(user)) > 0
    labels = [t.text for t in svg.findall("{http://www.w3.org/2000/svg}text")]
    assert set(named.user(user)["name"].str[:34]) <= set(labels)
    unnamed = extracted.timeline()  # the user with the most journeys, labelled by salient terms
    assert unnamed.user_id in set(extracted.journeys["user_id"]) and "<rect" in unnamed.svg


@pytest.mark.parametrize("call, message", [
    (lambda: journeys.extract("e", "i", min_itmes=10), "unknown keyword argument min_itmes for journeys.extract(): "
                                                       "did you mean min_items?"),
    (lambda: journeys.extract("e", "i", top_items=3), "top_items does not apply to journeys.extract(): it is an "
                                                      "option of journeys.export()"),
    (lambda: journeys.extract("e", "i", strategy="hdbscan", threshold=0.5), "threshold does not apply to the hdbscan"),
    (lambda: journeys.extract("e", "i", num_shards=0), "num_shards must be at least 1"),
    (lambda: journeys.name("j", max_titles=5), "max_titles does not apply to the keywords namer"),
    (lambda: journeys.export("n", export_shrads=2), "did you mean export_shards?"),
    (lambda: journeys.extract("e", "i", num_shards="many"), "argument num_shards: invalid int value: 'many'"),
])
def test_options_are_checked_as_the_command_line_checks_them(call, message):
    with pytest.raises(OptionError) as refused:
        call()
    assert message in str(refused.value)


def test_keywords_become_the_command_lines_arguments():
    argv = _argv({"threshold": 0.45, "include_centroid": True, "embed_per_event": False, "dry_run": True,
                  "experiments": ["a", "b"], "embedding_cache": None})
    assert argv == ["--threshold", "0.45", "--include_centroid", "--dry_run", "true", "--experiments", "a",
                    "--experiments", "b"]


def test_tables_are_taken_as_dataframes_arrow_tables_or_paths(tmp_path):
    workspace = _Workspace(tmp_path / "out")
    table = pa.table({"item_id": ["a"], "title": ["A"]})
    assert io.read_table(workspace.table(table, "items")).equals(table)
    assert io.read_table(workspace.table(table.to_pandas(), "again")).to_pylist() == table.to_pylist()
    assert workspace.table(tmp_path / "x.csv", "items") == str(tmp_path / "x.csv")
    with pytest.raises(TypeError, match="DataFrame, an Arrow table or a path"):
        workspace.table([{"item_id": "a"}], "items")
    workspace.close(keep_out=True)
    assert not os.path.exists(workspace.inputs)


def test_options_lists_every_keyword_with_its_default():
    table = journeys.options("extract")
    row = table.set_index("keyword").loc["min_items"]
    assert row["default"] == 4 and row["group"] == "journey extraction"
    assert "events" not in set(table["keyword"]) and "runner" in set(table["keyword"])


def test_a_temporary_output_goes_with_its_result(api_run):
    folder = api_run[2].out
    assert os.path.isdir(folder)
    exported = journeys.export(api_run[1])
    folder = exported.out
    del exported
    gc.collect()
    assert not os.path.exists(folder)


def test_make_sample_suggests_a_misspelt_setting():
    with pytest.raises(TypeError, match="did you mean noise_share"):
        journeys.make_sample(users=2, noise_shar=0.2)
    sample = journeys.make_sample(users=2, seed=1)
    assert set(sample.events["user_id"]) == {"u00000", "u00001"}
