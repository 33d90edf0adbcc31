"""Imports run one way through the layers: journeys/ (library) <- pipelines/ <- eval/, tuning/."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package, forbidden", [("tuning", {"eval"}), ("eval/uqabench", {"tuning"})])
def test_a_layer_does_not_import_a_layer_beside_or_above_it(package, forbidden):
    files = sorted((ROOT / package).glob("*.py"))
    assert files
    wrong = {f.name: sorted(imported_packages(f) & forbidden) for f in files if imported_packages(f) & forbidden}
    assert not wrong, f"{package}/ imports {wrong}"


def test_the_question_set_format_is_in_the_library():
    for name in ("uqa_questions.py", "uqa_scoring.py"):
        assert not imported_packages(ROOT / "journeys" / name) & {"eval", "tuning", "pipelines"}
