"""`journeys COMMAND --help` is the one place to look: every pipeline option, grouped as in the
pipeline's option classes, with its default, and no pipeline built to show it."""

from __future__ import annotations

import apache_beam as beam
import pytest

from journeys import cli
from pipelines import arguments


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["extract", "name", "export", "encode", "run"])
def test_help_lists_every_pipeline_option_in_its_group_without_building_a_pipeline(command, capsys, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("--help built a pipeline")

    monkeypatch.setattr(beam.Pipeline, "__init__", refuse)
    text = _help(command, capsys)
    sections = text.split("\npipeline options: ")
    for title, actions in arguments.option_groups(command):
        section = next(s for s in sections if s.startswith(title))
        for action in actions:  # in its group, or among the command's own options at the top
            flag = f"  {action.option_strings[0]} "
            assert flag in section or flag in sections[0], (title, flag)
    for option in arguments.NOT_FOR.get(command, {}):
        assert f"  {option} " not in text  # options of the command line the command does not read


def test_help_gives_defaults_and_the_groups_of_the_option_classes(capsys):
    text = _help("extract", capsys)
    assert "python -m pipelines.extract" not in text
    for title in ("pipeline options: events:", "pipeline options: journey extraction:",
                  "pipeline options: Beam and runners"):
        assert title in text
    flat = " ".join(text.split())
    for shown in ("--min_items MIN_ITEMS persistence: fewest distinct items in a journey (default 4)",
                  "(default mean)", "(default 1995-01-01)", "ICPC: cosine to join a journey (0.4)",
                  "--dry_run DRY_RUN"):
        assert shown in flat
    run = " ".join(_help("run", capsys).split())
    for option in ("--threshold", "--max_titles", "--top_items", "--export_format"):
        assert option in run


@pytest.mark.parametrize("option", ["--dask_client_address", "--flink_master", "--spark_master_url",
                                    "--render_output", "--prism_location", "--dry_run"])
def test_options_of_every_runner_beam_ships_pass_the_check(option):
    # Beam registers a runner's options only when its module is imported (Dask's needs dask).
    arguments.check("extract", [option, "x"] if option != "--dry_run" else [option, "true"])


def test_a_misspelt_runner_option_is_still_refused_with_a_suggestion():
    with pytest.raises(arguments.OptionError, match="did you mean --dask_client_address"):
        arguments.check("extract", ["--dask_client_adress", "x"])
