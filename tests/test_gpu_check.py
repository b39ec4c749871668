"""The GPU check's CPU-side plumbing (fastgen/gpu_check.py, `make gpu-check`): it refuses a
machine without CUDA at once, its parity cases cover every op with a Triton kernel and run
(under the Triton interpreter, on CPU tensors, at their small shapes) against the CPU kernels,
the comparison rule fails what it must, and the report is written."""

import json
import os
import subprocess
import sys

import pytest
import torch

from fastgen import gpu_check as G


def test_without_cuda_exits_at_once_with_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-m", "fastgen.gpu_check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA device"), done.stderr
    assert done.stdout == ""


def test_interpreter_flag_is_refused():
    # Under TRITON_INTERPRET=1 (as the tests run) a GPU run would silently time the interpreter.
    assert "TRITON_INTERPRET" in (G.no_cuda_reason() or "") or not torch.cuda.is_available()


def test_cases_cover_every_triton_op():
    ops = G.triton_ops()
    assert len(ops) >= 20, ops
    covered = {c.op for c in G.CASES}
    assert covered == ops, f"no case: {sorted(ops - covered)}; not a Triton op: {sorted(covered - ops)}"
    from fastgen.triton_kernels import FAMILIES

    assert {c.family for c in G.CASES} == set(FAMILIES)


def test_every_case_builds_its_inputs():
    """Small shapes in every dtype: the first argument tuple runs through the CPU op (so it binds
    to the schema). Large shapes (for the GPU) in float32: they build (the forward ops'; a
    backward's builder runs its forward op on the CPU, too slow at those shapes here)."""
    for c in G.CASES:
        for name in c.dtypes:
            variants = c.make(G.DTYPES[name], "small", torch.Generator().manual_seed(0))
            assert variants, (c.op, name)
            getattr(torch.ops.fastgen, c.op)(*variants[0])
        if "large" in c.sizes and not c.op.endswith("_backward"):
            large = c.make(torch.float32, "large", torch.Generator().manual_seed(0))
            assert large and all(len(a) == len(variants[0]) for a in large), c.op


@pytest.mark.parametrize("case", G.CASES, ids=lambda c: c.op)
def test_parity_cases_pass_under_the_interpreter(case):
    pytest.importorskip("triton")
    seen = []
    results = G.run_parity(
        G.launcher_op,
        lambda t: t,
        dtypes=("float32",),
        sizes=("small",),
        only=f"{case.family}.{case.op}",
        echo=seen.append,
        limit=3,
    )
    results = [r for r in results if r.case == f"{case.family}.{case.op}"]
    assert results and all(r.variants for r in results)
    assert not seen, "\n".join(seen)


@pytest.mark.parametrize("op", ["instance_norm_backward", "pixel_shuffle_prelu", "grad_penalty"])
def test_low_precision_cases_under_the_interpreter(op):
    pytest.importorskip("triton")
    seen = []
    G.run_parity(
        G.launcher_op,
        lambda t: t,
        dtypes=("bfloat16", "float16", "float64"),
        sizes=("small",),
        only=f".{op}",
        echo=seen.append,
        limit=2,
    )
    assert not seen, "\n".join(seen)


def test_a_wrong_kernel_is_reported():
    """A device result off by more than the rule allows, with a NaN of its own, or of another
    shape, is one failure line each."""
    c = next(c for c in G.CASES if c.op == "pixel_norm")
    lines = []

    def off(case, args):
        return torch.ops.fastgen.pixel_norm(*args) * (1 + 1e-3)

    r = G.run_case(c, "float32", "small", off, lambda t: t, limit=2)
    assert len(r.failures) == 2 and "error" in r.failures[0]
    x = torch.randn(3, 4)
    assert G.compare(x, x, x.double()) is None
    nan = x.clone()
    nan[0, 0] = float("nan")
    assert "NaN" in G.compare(nan, x, x.double())
    assert "shape" in G.compare(x[:2], x, x.double())
    assert "integer" in G.compare(torch.tensor([1, 2]), torch.tensor([1, 3]), torch.tensor([1, 3]))
    del lines


def test_a_raising_kernel_is_one_failure_not_the_end():
    c = next(c for c in G.CASES if c.op == "pixel_norm")

    def boom(case, args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    r = G.run_case(c, "float32", "small", boom, lambda t: t, limit=2)
    assert r.variants == 2 and all("illegal memory access" in f for f in r.failures)


def test_eager_cases_run_on_cpu():
    """The functional-vs-eager cases build, run forward and backward, and compare (on the CPU
    kernels here)."""
    seen = []
    results = G.run_eager("cpu", dtypes=("float32",), echo=seen.append)
    assert len(results) >= 7 and all(r.variants == 1 for r in results), [r.failures for r in results]
    assert not seen, "\n".join(seen)


def test_eager_cases_compiled_on_cpu():
    seen = []
    results = G.run_eager("cpu", dtypes=("float32",), echo=seen.append, compiled=True)
    assert all(r.variants == 2 for r in results), [r.failures for r in results]
    assert not seen, "\n".join(seen)


def test_report_files(tmp_path):
    ok = G.Result("pixel_norm.pixel_norm", "float32", "small", variants=5, seconds=0.1)
    bad = G.Result(
        "instance_norm.instance_norm",
        "bfloat16",
        "large",
        variants=3,
        seconds=0.4,
        failures=["variant 1, output 0: error 1 > 2 x CPU kernel's 0.01 + floor 0.001"],
    )
    env = {
        "device": "NVIDIA H100 80GB HBM3",
        "driver": "550.54",
        "torch": "2.13.0",
        "triton": "3.9.0",
        "traces": {
            "pixel_norm": {"registered": True, "kernels": 1},
            "margin_softmax": {"registered": False, "error": "DataDependentOutputException: ..."},
        },
    }
    bench = {"command": ["python", "-m", "fastgen.bench", "--device", "cuda"], "returncode": 0, "seconds": 60.0}
    G.write_report(str(tmp_path), env, [ok, bad], [], bench, 75.0)
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["environment"]["device"] == env["device"] and data["failures"] == 1
    assert [r["case"] for r in data["parity"]] == [ok.case, bad.case]
    md = (tmp_path / "gpu_check.md").read_text()
    assert "NVIDIA H100" in md and "driver: 550.54" in md and bad.failures[0] in md
    assert "| pixel_norm | True | 1 |" in md and "- traces" not in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "gpu_check.png").stat().st_size > 0


def test_bench_without_a_device_option_is_one_clear_failure(monkeypatch, tmp_path):
    class Done:
        returncode, stdout, stderr = 0, "usage: fastgen-bench [--quick] [--full]", ""

    monkeypatch.setattr(G.subprocess, "run", lambda *a, **k: Done())
    seen = []
    info = G.run_bench(str(tmp_path), quick=True, echo=seen.append)
    assert info["returncode"] is None and "--device" in info["error"]
    assert len(seen) == 1 and seen[0].startswith("FAIL bench")
