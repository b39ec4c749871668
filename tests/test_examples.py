"""Every example trains for a handful of steps: the PNG is written, the held-out metric it prints
(its SUMMARY line) ends better than it started (fixed seed), and --compare-eager trains the
eager twin from the same weights on the same data."""

from __future__ import annotations

import importlib
import json
import math
import os

import pytest

from examples._common import SUMMARY

pytestmark = pytest.mark.slow  # trains every example (pyproject.toml: the slow marker)

# (example, steps that are enough for the metric to improve with seed 0)
EXAMPLES = [
    ("autoencoder", 60),
    ("vae", 60),
    ("cvae", 60),
    ("dcgan", 40),
    ("wgan_gp", 10),
    ("realnvp", 40),
    ("cyclegan", 20),
    ("pix2pix", 20),
    ("srgan", 30),
    ("arcface", 40),
]

EAGER = " (eager twin)"


def _run(name, tmp_path, *extra):
    module = importlib.import_module(f"examples.{name}")
    return module.main(["--quiet", "--out", str(tmp_path), *extra])


def _summaries(out: str) -> list[dict]:
    """The SUMMARY lines an example printed, one per training run, in order."""
    return [json.loads(line[len(SUMMARY) :]) for line in out.splitlines() if line.startswith(SUMMARY)]


def _assert_improved(summary: dict) -> None:
    first, last, better = summary["first"], summary["last"], summary["better"]
    assert better in ("lower", "higher"), summary
    assert math.isfinite(first) and math.isfinite(last), summary
    improved = last < first if better == "lower" else last > first
    assert improved, (
        f"{summary['run']}: {summary['metric']} did not improve ({better} is better) in "
        f"{summary['steps']} steps: {first:.4g} -> {last:.4g}"
    )


@pytest.mark.parametrize("name,steps", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_learns_and_draws(name, steps, tmp_path, capsys):
    run = _run(name, tmp_path, "--steps", str(steps))
    summaries = _summaries(capsys.readouterr().out)
    assert run.images, f"{name} wrote no picture"
    for path in run.images:
        assert os.path.dirname(path) == str(tmp_path)
        assert os.path.getsize(path) > 1000, f"{path} is empty"
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(run.losses) == steps
    assert summaries, f"{name} printed no {SUMMARY!r} line"
    # The metric the example reports (its returned run) is the last one printed.
    reported = summaries[-1]
    assert (reported["metric"], reported["first"], reported["last"], reported["steps"]) == (
        run.metric_name,
        run.metric_start,
        run.metric_end,
        steps,
    )
    for summary in summaries:  # realnvp trains two flows: both must learn
        _assert_improved(summary)


def test_improvement_check_fails_without_training(tmp_path, capsys):
    """The check above can fail: with 0 training steps the metric stays where it started."""
    _run("autoencoder", tmp_path, "--steps", "0")
    (summary,) = _summaries(capsys.readouterr().out)
    assert summary["first"] == summary["last"]
    with pytest.raises(AssertionError, match="did not improve"):
        _assert_improved(summary)


@pytest.mark.parametrize("name", [n for n, _ in EXAMPLES])
def test_example_compare_eager(name, tmp_path, capsys):
    _run(name, tmp_path, "--steps", "2", "--compare-eager")
    out = capsys.readouterr().out
    assert "eager twin" in out
    summaries = _summaries(out)
    fast = [s for s in summaries if not s["run"].endswith(EAGER)]
    eager = {s["run"][: -len(EAGER)]: s for s in summaries if s["run"].endswith(EAGER)}
    assert fast and len(eager) == len(fast), f"{name}: not one eager twin run per fastgen run: {summaries}"
    for s in fast:
        twin = eager[s["run"]]
        assert (twin["metric"], twin["better"], twin["steps"]) == (s["metric"], s["better"], 2)
        # Same starting weights, same held-out data: the same metric before training (up to
        # the fused kernels' rounding).
        assert twin["first"] == pytest.approx(s["first"], rel=1e-3), f"{s['run']}: the twin starts elsewhere"
        assert math.isfinite(twin["last"]), twin
