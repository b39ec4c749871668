"""Every example trains for a handful of steps: the PNG is written, the held-out metric after
N steps is below the metric at step 0 (fixed seed), and --compare-eager trains the eager twin."""
from __future__ import annotations

import importlib
import os

import pytest

# (example, steps that are enough for the metric to fall with seed 0)
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


def _run(name, tmp_path, *extra):
    module = importlib.import_module(f"examples.{name}")
    return module.main(["--quiet", "--out", str(tmp_path), *extra])


@pytest.mark.parametrize("name,steps", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_learns_and_draws(name, steps, tmp_path):
    run = _run(name, tmp_path, "--steps", str(steps))
    assert run.images, f"{name} wrote no picture"
    for path in run.images:
        assert os.path.dirname(path) == str(tmp_path)
        assert os.path.getsize(path) > 1000, f"{path} is empty"
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(run.losses) == steps
    assert run.metric_end < run.metric_start, (
        f"{name}: {run.metric_name} did not fall in {steps} steps: {run.metric_start:.4g} -> {run.metric_end:.4g}")


@pytest.mark.parametrize("name", [n for n, _ in EXAMPLES])
def test_example_compare_eager(name, tmp_path, capsys):
    _run(name, tmp_path, "--steps", "2", "--compare-eager")
    assert "eager twin" in capsys.readouterr().out
