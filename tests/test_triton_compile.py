"""The Triton kernels as torch.compile sees them (fastgen/ops/_triton.py), without a GPU: fake
CUDA tensors through AOTAutograd's functionalization (what torch.compile runs before Inductor)
turn each traceable fastgen op into its Triton kernels (triton_kernel_wrapper_functional
nodes); torch.export keeps the op itself; CPU tensors keep the op (the C++ kernel)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

# Runs without TRITON_INTERPRET (wrap_triton takes compiled-mode kernels only); nothing is launched.
SCRIPT = r"""
import json, logging, torch, fastgen
# Without a GPU Triton has no driver: torch's mutation analysis of the kernels then assumes every
# pointer argument is written (a warning); the graph is otherwise what a GPU machine gets.
logging.getLogger("torch._higher_order_ops.triton_kernel_wrap").setLevel(logging.ERROR)
from torch._functorch.aot_autograd import aot_export_module
from torch._subclasses.fake_tensor import FakeTensorMode
from torch._subclasses.functional_tensor import FunctionalTensorMode
from torch._library.simple_registry import singleton
from fastgen import gpu_check as G

def graph(op, args, device, export=False):
    fm = FakeTensorMode(allow_non_fake_inputs=True)
    with fm:
        fargs = [torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=device)
                 if isinstance(a, torch.Tensor) else a for a in args]
    pos = [i for i, a in enumerate(fargs) if isinstance(a, torch.Tensor)]
    class M(torch.nn.Module):
        def forward(self, *ts):
            full = list(fargs)
            for i, t in zip(pos, ts):
                full[i] = t
            out = getattr(torch.ops.fastgen, op)(*full)
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    inputs = tuple(fargs[i] for i in pos)
    if export:
        return torch.export.export(M(), inputs).graph_module.code
    return aot_export_module(M(), inputs, trace_joint=False)[0].code

out = {}
for c in G.CASES:
    args = c.make(torch.float32, "small", torch.Generator().manual_seed(0))[0]
    rule = singleton.find(f"fastgen::{c.op}").torch_dispatch_rules.find(FunctionalTensorMode)
    r = {"rule": rule is not None}
    try:
        code = graph(c.op, args, "cuda")
        r["kernels"] = code.count("triton_kernel_wrapper_functional(")
        r["opaque"] = f"fastgen.{c.op}.default" in code
    except Exception as e:
        r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    out[c.op] = r
args = next(c for c in G.CASES if c.op == "pixel_norm").make(torch.float32, "small", torch.Generator())[0]
code = graph("pixel_norm", args, "cpu")
out["_cpu"] = {"opaque": "fastgen.pixel_norm.default" in code, "kernels": code.count("triton_kernel_wrapper")}
code = graph("pixel_norm", args, "cuda", export=True)
out["_export"] = {"opaque": "fastgen.pixel_norm.default" in code, "kernels": code.count("triton_kernel_wrapper")}
out["_trace_report"] = G.trace_report()  # what make gpu-check prints on a GPU
out["_rules_after"] = [c.op for c in G.CASES
                       if singleton.find(f"fastgen::{c.op}").torch_dispatch_rules.find(FunctionalTensorMode)]
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def traced():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def test_traceable_ops_become_their_triton_kernels(traced):
    from fastgen import gpu_check as G

    traceable = [c.op for c in G.CASES if traced[c.op]["rule"]]
    assert len(traceable) >= 16, traced
    for op in traceable:
        r = traced[op]
        assert "error" not in r and r["kernels"] >= 1 and not r["opaque"], (op, r)


def test_untraceable_ops_stay_opaque_custom_ops(traced):
    """Ops whose launchers do data-dependent host work (label checks) or that the tracer cannot
    follow yet keep only the CUDA kernel registration: torch.compile calls them as opaque ops
    (their fake impls give the shapes), as before."""
    from fastgen import gpu_check as G

    for c in G.CASES:
        r = traced[c.op]
        if not r["rule"]:
            assert "error" not in r and r["opaque"] and r["kernels"] == 0, (c.op, r)


def test_cpu_tensors_and_export_keep_the_op(traced):
    assert traced["_cpu"] == {"opaque": True, "kernels": 0}
    assert traced["_export"] == {"opaque": True, "kernels": 0}


def test_gpu_check_trace_report(traced):
    """gpu_check.trace_report agrees with the graphs above for the registered ops, tries the
    others with a rule registered for the run only, and leaves the registrations as they were."""
    from fastgen import gpu_check as G

    report = traced["_trace_report"]
    assert set(report) == {c.op for c in G.CASES}
    for c in G.CASES:
        r, t = report[c.op], traced[c.op]
        assert r["registered"] == t["rule"], c.op
        if t["rule"]:
            assert r.get("kernels") == t["kernels"], (c.op, r, t)
    assert sorted(traced["_rules_after"]) == sorted(c.op for c in G.CASES if traced[c.op]["rule"])
