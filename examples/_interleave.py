"""Interleaved wall time of an example's fastgen model and its eager twin, for shared machines where
--compare-eager's back-to-back runs see different loads: runs the example's main() with training
stubbed out to capture both step closures (the example's own update code, same batches), then
alternates blocks of steps of the two in one process and prints the median (and minimum) ms per
step.

    python -m examples._interleave NAME [blocks] [steps_per_block]
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from collections import defaultdict

import torch

import examples._common as C

name = sys.argv[1]
blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 6
per_block = int(sys.argv[3]) if len(sys.argv) > 3 else 10
captured = []


def fake_train(run_name, steps, step, evaluate, metric_name, **kw):
    captured.append((run_name, step))
    r = C.Run(metric_name, 0.0, 0.0)
    r.extra = defaultdict(list)
    r.extra["snapshots"] = []
    return r


C.train = fake_train
C.report_eager = lambda *a, **k: None
C.save_grid = lambda *a, **k: "x"
C.save_figure = lambda *a, **k: "x"
mod = importlib.import_module(f"examples.{name}")
for m in [sys.modules[k] for k in list(sys.modules) if k.startswith("examples")]:
    for attr in ("train", "report_eager", "save_grid", "save_figure"):
        if hasattr(m, attr):
            setattr(m, attr, getattr(C, attr))
try:
    mod.main(["--compare-eager", "--steps", "1", "--quiet", "--out", "/tmp/fastgen-interleave"])
except Exception as e:  # after capturing, main's own post-processing may trip on the fake runs
    print("main stopped:", type(e).__name__, str(e)[:100])
steps = {}
for run_name, step in captured:
    steps.setdefault("eager" if "eager" in run_name else "fastgen", []).append(step)
print(name, {k: len(v) for k, v in steps.items()}, "threads", torch.get_num_threads())
i = 0
for k in steps:
    for s in steps[k]:
        for _ in range(3):
            s(i)
            i += 1
times = {k: [] for k in steps}
for b in range(blocks):
    for k in ("fastgen", "eager") if b % 2 == 0 else ("eager", "fastgen"):
        t0 = time.perf_counter()
        for _ in range(per_block):
            for s in steps[k]:
                s(i)
                i += 1
        times[k].append((time.perf_counter() - t0) / per_block * 1e3)
mf, me = statistics.median(times["fastgen"]), statistics.median(times["eager"])
print(
    f"{name}: ms/step median (min) fastgen {mf:.2f} ({min(times['fastgen']):.2f}) eager {me:.2f} "
    f"({min(times['eager']):.2f}) "
    f"eager/fastgen {me / mf:.2f}x (min {min(times['eager']) / min(times['fastgen']):.2f}x)"
)
