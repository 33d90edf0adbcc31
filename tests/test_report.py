"""The HTML report: built from real evaluation output, and rendered by headless Chromium."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from eval.naming import evaluate_naming, sample_reference_set
from eval.report import CHART_METRICS, render
from journeys import cli, io
from journeys.embedding import Embedder
from journeys.naming import create_namer

ARTIFACTS = Path(os.environ.get("JOURNEYS_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_files(journeys_dir, journeys_run, small_sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    reference_set = sample_reference_set(io.read_table(journeys_dir).to_pylist(), small_sample["truth"])
    evaluation = evaluate_naming(reference_set, {"keywords": create_namer("keywords")}, Embedder(), resamples=100)
    (folder / "eval.json").write_text(json.dumps(evaluation))
    assert cli.main(["report", "--eval", str(folder / "eval.json"), "--named", journeys_run["named"],
                     "--out", str(folder / "report.html")]) == 0
    return folder


def test_report_holds_the_table_charts_histogram_and_timelines(report_files):
    page = (report_files / "report.html").read_text()
    assert page.count('class="chart"') == len(CHART_METRICS) + 1  # metric charts and the histogram
    assert page.count('class="timeline"') >= 1 and "<script" not in page
    assert '<table class="comparison">' in page and "<td>keywords</td>" in page
    markdown = (report_files / "report.md").read_text()
    assert "| keywords |" in markdown and "Journeys per user" in markdown


def test_report_needs_something_to_report(tmp_path, capsys):
    assert cli.main(["report", "--out", str(tmp_path / "r.html")]) == 2
    assert "nothing to report" in capsys.readouterr().err


def test_other_strategies_show_their_difference_from_keywords_and_why_they_fell_back():
    metric = {"mean": 0.5, "low": 0.4, "high": 0.6, "n": 10}
    evaluation = {"reference_set": "x", "journeys": 10, "scored": 10, "users": 3,
                  "settings": {"model": "gemma-3-270m", "max_titles": 5, "prompt_inputs": "terms", "candidates": 8,
                               "model_answers_only": True},
                  "history_at_once": True,
                  "strategies": {"keywords": {"metrics": {"semantic": metric}, "cost": {}},
                                 "few-shot": {"metrics": {"semantic": metric}, "cost": {},
                                              "vs_keywords": {"semantic": {"mean": -0.25, "low": -0.3, "high": -0.2}},
                                              "fallback_reasons": {"model answer rejected (12 words > 8)": 7}}}}
    page, markdown = render([evaluation], None, [])
    assert '<table class="differences">' in page and "-0.250 [-0.300, -0.200]" in page
    assert ("model gemma-3-270m, max_titles 5, prompt_inputs terms, 8 candidates per journey, model answers only, "
            "whole history named at once") in markdown
    assert "- few-shot: model answer rejected (12 words &gt; 8) (7)" not in markdown  # Markdown is not escaped
    assert "- few-shot: model answer rejected (12 words > 8) (7)" in markdown


def test_render_escapes_names():
    evaluation = {"reference_set": "x", "journeys": 1, "scored": 0, "users": 1,
                  "strategies": {"<b>odd</b>": {"metrics": {}, "cost": {}}}}
    page, _ = render([evaluation], None, [])
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="Chromium is not installed (CI installs it)")
def test_the_report_renders_in_headless_chromium(report_files):
    assert CHROMIUM, "CI must install Debian's chromium package"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={report_files / 'chromium-profile'}", "--window-size=1280,1600"]
    url = (report_files / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") == len(CHART_METRICS) + 1 + dom.count('class="timeline"')
    assert dom.count('class="bar"') >= len(CHART_METRICS) and "<td>keywords</td>" in dom
    subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    assert screenshot.stat().st_size > 20_000  # a blank page is a few kB
