"""The UQABench benchmark's printed tables and scaling plot, from a results dict of the shape its
sections write (no model runs: the figures here are made up, only the layout is under test)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "uqabench.py"
DIMENSIONS = ("sequence_understanding", "action_prediction", "interest_perception")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("uqabench_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _interval(accuracy, difference=None):
    cell = {"accuracy": accuracy, "low": accuracy - 0.1, "high": accuracy + 0.1}
    if difference is not None:
        cell.update(difference=difference, difference_low=difference - 0.05, difference_high=difference + 0.05)
    return cell


def _row(accuracy, difference=None):
    return {**{d: accuracy for d in DIMENSIONS}, "overall": accuracy, "prompt_tokens": 19.0,
            "intervals": {name: _interval(accuracy, difference) for name in (*DIMENSIONS, "overall")}}


def _sweep_row(width, depth, history, accuracy):
    return {"width": width, "depth": depth, "history": history, "recall@10": 0.1, **_row(accuracy)}


def test_tables_mark_the_reference_row_and_print_every_section(bench, capsys):
    sweep = [_sweep_row(32, 1, 10, 0.25), _sweep_row(32, 1, 50, 0.31)]
    bench.print_tables({"movielens": {"trained: no history (soft1)": _row(0.25),
                                      "untrained: journey x words4": _row(0.45, difference=0.2)},
                        "scaling": sweep})
    printed = capsys.readouterr().out
    reference_line = next(line for line in printed.splitlines() if line.startswith("trained: no history"))
    assert "(reference)" in reference_line
    assert "+0.200 [+0.150,+0.250]" in printed
    # A run of the sweep alone (no efficiency section) still prints its table.
    assert "Scaling sweep" in printed and "0.310 [0.210,0.410]" in printed


def test_scaling_plot_has_a_line_and_interval_bars_per_series(bench):
    rows = [_sweep_row(w, 1, n, 0.2 + 0.01 * i) for i, (w, n) in enumerate([(32, 10), (32, 50), (64, 10), (64, 50)])]
    svg = bench.svg_plot(rows)
    assert svg.count("<polyline") == 2
    assert svg.count("<circle") == 4
    # one interval bar per point, beside the axes and the chance line
    assert svg.count("<line") == 3 + 4
    assert "width 64, depth 1" in svg and ">0.00<" in svg


def _plan(bench, *options):
    return bench.run_plan(bench.arguments().parse_args(["--out", "unused", *options]))


def test_the_default_run_is_the_hour_sized_one_with_the_sweep(bench):
    default, quick, full = _plan(bench), _plan(bench, "--quick"), _plan(bench, "--full")
    assert default["sections"] == {"accuracy", "efficiency", "scaling", "movielens"}
    assert (default["users"], default["steps"], default["text_budget"], default["modes"]) == (60, 20, 128, ["words4"])
    assert default["sweep"] == ([32, 64], [1, 2], [10, 50]) and default["movielens_rows"]
    assert quick["sections"] == default["sections"] - {"scaling"} and quick["users"] == 60
    assert (full["users"], full["steps"], full["sweep"][2], full["movielens_rows"]) == (200, 60, [10, 25, 50], None)
    assert len(full["modes"]) == len(bench.MODES) and len(full["sequence_kinds"]) == 3
    assert _plan(bench, "--users", "30", "--sweep_histories", "5")["users"] == 30


@pytest.mark.parametrize("options, message", [
    (["--full", "--quick"], "two different runs"),
    (["--modes", "soft1,nope"], "unknown --modes nope"),
    (["--sections", "accuracy,speed"], "unknown --sections speed"),
    (["--sweep_widths", "32,wide"], "comma-separated integers"),
])
def test_bad_options_fail_before_any_work(bench, options, message):
    with pytest.raises(ValueError, match=message):
        _plan(bench, *options)
