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
    mu, logvar, eps = (torch.randn(4, 9, generator=g) for _ in range(3))
    f = lambda m, l, e: fast_ops.reparam_kl(m, l, e, None, "mean")  # noqa: E731
    o = lambda m, l, e: ops.reparam_kl(m, l, e, None, "mean")  # noqa: E731
    for a, c in zip(_grads(f, [mu, logvar, eps])[1], _grads(o, [mu, logvar, eps])[1]):
        assert torch.equal(a, c)
