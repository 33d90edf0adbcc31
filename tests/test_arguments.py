"""The pipeline commands' option contract: what passes, what is refused and what is suggested."""

from __future__ import annotations

import pytest

from pipelines import arguments
from pipelines.arguments import OptionError

DATAFLOW = ("--runner DataflowRunner --project p --region r --temp_location gs://b/t --setup_file ./setup.py "
            "--num_workers 3 --machine_type n1-standard-4 --experiments use_runner_v2 "
            "--direct_running_mode multi_processing --direct_num_workers 2").split()


@pytest.mark.parametrize("command, argv", [
    ("extract", DATAFLOW),
    ("extract", ["--threshold", "0.5", "--min_cluster_size=4", "--min_timestamp", "2000-01-01"]),
    ("extract", ["--strategy", "hdbscan", "--min_cluster_size", "4", "--hdbscan_selection", "eom"]),
    ("name", ["--max_titles", "5", "--batch_size", "2", *DATAFLOW]),
    ("export", ["--top_items", "3", "--export_shards", "2", "--include_centroid"]),
    ("encode", ["--half_life_days", "10", "--encode_shards", "2"]),
    ("run", ["--min_items", "2", "--max_titles", "4", "--top_items", "3", "--embedding_cache", "c"]),
])
def test_known_options_pass(command, argv):
    arguments.check(command, argv)


@pytest.mark.parametrize("command, argv, message", [
    ("extract", ["--min_itmes", "10"], "did you mean --min_items"),
    ("extract", ["--strategy", "hdbscan", "--merge_threshold", "0.3"], "--merge_threshold does not apply to the hdb"),
    ("extract", ["--strategy", "hdbscan", "--log_threshold", "0.6"], "--log_threshold does not apply to the hdb"),
    ("extract", ["--top_items", "3"], "`journeys export`"),
    ("extract", ["--num_shards", "0"], "--num_shards must be at least 1"),
    ("name", ["--min_span_days", "3"], "`journeys extract`"),
    ("name", ["--candidates", "0"], "--candidates must be at least 1"),
    ("export", ["--export_shards", "0"], "at least 1"),
    ("encode", ["--encode_shrads", "2"], "did you mean --encode_shards"),
    ("run", ["--named", "x"], "run passes name's named/"),
    ("extract", ["--num_shards", "abc"], "argument --num_shards: invalid int value: 'abc'"),
])
def test_wrong_options_are_refused_with_the_option_named(command, argv, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(")):
        arguments.check(command, argv)


@pytest.mark.parametrize("namer, option, refused", [
    ("keywords", "--max_titles", True), ("few-shot", "--max_titles", False), ("few-shot", "--adapter", True),
    ("prompt-tuned", "--exemplars", True), ("few-shot", "--exemplars", False), ("fine-tuned", "--adapter", False),
    ("keywords", "--candidates", True), ("fine-tuned", "--candidates", False),
    ("keywords", "--model_answers_only", True), ("few-shot", "--model_answers_only", False),
])
def test_naming_options_apply_to_their_namers_only(namer, option, refused):
    if refused:
        with pytest.raises(OptionError, match=option):
            arguments.check_namer(namer, ["name", option, "x"])
    else:
        arguments.check_namer(namer, ["name", option, "x"])
