"""The autograd of every fastgen op is C++ (csrc/autograd/<family>.cpp): a torch::autograd::Function
per op registered for the Autograd key, whose backward calls the backward op, which has its own
Function (double backward). These tests check that no Python runs per call, and first- and
second-order gradients against float64 references (the family tests add gradcheck/gradgradcheck,
opcheck and torch.compile)."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import fastgen
from fastgen import functional as F
from fastgen.reference import instance_norm as R_in
from tests._tolerance import assert_parity

FASTGEN_DIR = os.path.dirname(os.path.abspath(fastgen.__file__))

# Every differentiable op and its backward op.
OPS = [
    "instance_norm", "instance_norm_backward",
]


@pytest.mark.parametrize("name", OPS)
def test_autograd_kernel_is_cpp(name):
    dump = torch._C._dispatch_dump(f"fastgen::{name}")
    line = next((ln for ln in dump.splitlines() if ln.startswith("Autograd[") or ln.startswith("Autograd:")), None)
    assert line is not None, f"fastgen::{name} has no Autograd kernel:\n{dump}"
    assert f"csrc{os.sep}autograd{os.sep}" in line, f"fastgen::{name}'s Autograd kernel is not the C++ one: {line}"


def _python_frames_in_fastgen(fn):
    """The fastgen Python functions that run while fn() runs."""
    seen = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(FASTGEN_DIR):
            seen.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return seen


def _tiny_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    w = torch.randn(3, generator=g, requires_grad=True)
    yield "instance_norm", lambda: torch.ops.fastgen.instance_norm(x, w, w, None, None, None, True, 1e-5, "relu",
                                                                   0.0)[0]


@pytest.mark.parametrize("case", list(_tiny_cases()), ids=lambda c: c[0])
def test_no_python_runs_in_forward_and_backward(case):
    _, fn = case

    def step():
        out = fn()
        out.backward(torch.ones_like(out))

    step()  # first call: lazy imports, op lookups
    assert _python_frames_in_fastgen(step) == []


def _second_order(fn, leaves, seed=0):
    """fn's output, its gradients (cotangent v) and the gradients of <grads, u> w.r.t. the leaves."""
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = fn(*leaves)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)
    first = torch.autograd.grad(out, leaves, v, create_graph=True)
    u = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) for t in first]
    second = torch.autograd.grad(sum((f * w).sum() for f, w in zip(first, u)), leaves, allow_unused=True)
    second = [torch.zeros_like(t) if s is None else s for s, t in zip(second, leaves)]
    return [out.detach(), *[f.detach() for f in first], *second]


def _second_order_parity(fast_fn, eager_fn, inputs, what):
    fast = _second_order(fast_fn, inputs)
    eager = _second_order(eager_fn, inputs)
    ref = _second_order(eager_fn, [t.double() for t in inputs])
    for i, (f, e, r) in enumerate(zip(fast, eager, ref)):
        assert_parity(f, e, r, what=f"{what} [{i}]", floor_ulps=64)


@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu"])
@pytest.mark.parametrize("use_input_stats", [True, False])
def test_instance_norm_second_order(activation, use_input_stats):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64).float()
    w, b = torch.rand(3, generator=g, dtype=torch.float64).float() + 0.5, torch.randn(3, generator=g).float()
    rm, rv = torch.randn(3, generator=g).float(), torch.rand(3, generator=g).float() + 0.5

    def call(impl):
        def fn(x, w, b):
            stats = (None, None) if use_input_stats else (rm.to(x.dtype), rv.to(x.dtype))
            return impl(x, *stats, weight=w, bias=b, use_input_stats=use_input_stats, activation=activation,
                        negative_slope=0.2)
        return fn

    _second_order_parity(call(F.instance_norm), call(R_in.instance_norm), [x, w, b], f"instance_norm {activation}")
