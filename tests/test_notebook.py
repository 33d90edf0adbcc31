"""examples/quickstart.ipynb runs top to bottom (sample data, extract, name, one user's timeline), as
a reader would run it, in a fresh kernel; its outputs are of the kinds the committed copy shows."""

from __future__ import annotations

import os
import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _kinds(cell) -> list[str]:
    return [output.output_type + ":" + ",".join(sorted(output.get("data", {})) or [output.get("name", "")])
            for output in cell.get("outputs", [])]


def test_the_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # The kernel is this environment's Python, whichever `python` comes first on PATH.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    committed = nbformat.read(NOTEBOOK, as_version=4)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on a failing cell
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [_kinds(cell) for cell in code] == [_kinds(cell) for cell in committed.cells if cell.cell_type == "code"]
    for cell in code:
        assert not any(o.output_type == "stream" and o.name == "stderr" for o in cell.outputs), cell.outputs
    printed = "".join(o.get("text", "") for cell in code for o in cell.outputs)
    assert "unknown keyword argument min_itmes for journeys.extract(): did you mean min_items?" in printed
    svg = code[-1].outputs[0]["data"]["image/svg+xml"]
    assert svg.startswith("<svg") and svg.count('class="lane"') >= 2
    nbformat.write(notebook, tmp_path / "quickstart.executed.ipynb")
