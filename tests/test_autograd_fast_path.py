"""fastgen's Python API enters each op's autograd through a plain autograd.Function
(fastgen/_autograd.py) instead of torch.library's dispatcher wrapper: same setup_context and
backward, so the gradients must be bitwise those of torch.ops.fastgen.* called directly."""
from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen._autograd import fast_ops

ops = torch.ops.fastgen


def _grads(out_fn, leaves):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = out_fn(*leaves)
    out = out if isinstance(out, tuple) else (out,)
    grads_in = [torch.randn(o.shape, generator=torch.Generator().manual_seed(i), dtype=o.dtype)
                for i, o in enumerate(out) if o.dtype.is_floating_point and o.requires_grad]
    diff_out = [o for o in out if o.dtype.is_floating_point and o.requires_grad]
    return out, torch.autograd.grad(diff_out, leaves, grads_in, create_graph=True), diff_out


def test_fast_path_matches_the_library_autograd_bitwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, 6, generator=g)
    w, b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    args = lambda x, w, b: (x, w, b, None, None, None, True, 1e-5, "leaky_relu", 0.2)  # noqa: E731
    fast_out, fast_g, fast_diff = _grads(lambda *t: fast_ops.instance_norm(*args(*t)), [x, w, b])
    lib_out, lib_g, lib_diff = _grads(lambda *t: ops.instance_norm(*args(*t)), [x, w, b])
    assert "instance_norm_function" in type(fast_diff[0].grad_fn).__name__  # the fast path ran
    assert "GeneratedBackwardFor" in type(lib_diff[0].grad_fn).__name__
    for a, c in zip((*fast_out, *fast_g), (*lib_out, *lib_g)):
        assert torch.equal(a, c)
    # create_graph=True: both are differentiable again (second order: the test below)
    assert all(t.requires_grad for t in (*fast_g, *lib_g))
    mu, logvar, eps = (torch.randn(4, 9, generator=g) for _ in range(3))
    f = lambda m, l, e: fast_ops.reparam_kl(m, l, e, None, "mean")  # noqa: E731
    o = lambda m, l, e: ops.reparam_kl(m, l, e, None, "mean")  # noqa: E731
    for a, c in zip(_grads(f, [mu, logvar, eps])[1], _grads(o, [mu, logvar, eps])[1]):
        assert torch.equal(a, c)


def test_fast_path_steps_aside_when_nothing_records():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    with torch.no_grad():
        assert F.instance_norm(x).grad_fn is None
    y = F.instance_norm(x.detach())
    assert y.grad_fn is None and not y.requires_grad


def test_second_order_matches_bitwise():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 4, 5, 5, generator=g)
    results = []
    for call in (fast_ops.instance_norm, ops.instance_norm):
        x = x0.clone().requires_grad_()
        out = call(x, None, None, None, None, None, True, 1e-5, "relu", 0.0)[0]
        (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad(gx.square().sum(), x)
        results.append((gx.detach(), ggx))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
