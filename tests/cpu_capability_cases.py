"""A quick parity subset per op family, run once per CPU capability by
tests/test_cpu_capabilities.py (in subprocesses with ATEN_CPU_CAPABILITY=default, avx2, avx512:
each variant of fastgen._C is a separately compiled copy of the kernels, so each is checked).

Per family: float32 and bfloat16 forward and gradients against the eager reference under the
parity rule, a float64 gradcheck, and one channels_last (or transposed) input. Not collected by
a plain `pytest tests` run (its name does not start with test_); the matrix runs it by path.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as TF

import fastgen
from fastgen import functional as F
from fastgen.reference import coupling as R_coupling
from fastgen.reference import grad_penalty as R_grad_penalty
from fastgen.reference import instance_norm as R_instance_norm
from fastgen.reference import margin_softmax as R_margin
from fastgen.reference import pixel_norm as R_pixel_norm
from fastgen.reference import pixel_shuffle as R_pixel_shuffle
from fastgen.reference import reparam_kl as R_reparam_kl
from fastgen.reference import triplet as R_triplet
from tests._tolerance import assert_parity


def test_the_requested_variant_is_in_use():
    expected = os.environ.get("FASTGEN_EXPECT_CAPABILITY")
    if expected is None:
        pytest.skip("run by tests/test_cpu_capabilities.py")
    info = fastgen.build_info()
    assert info["cpu_capability"] == expected == torch.backends.cpu.get_cpu_capability()
    assert info["float_vector_width"] == {"AVX512": 16, "AVX2": 8, "DEFAULT": 8}[expected]


def _labels(n, classes, seed=0):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


# name -> (make inputs(dtype, layout) -> tuple of tensors, fastgen fn, reference fn). Inputs that
# are differentiable are the floating-point ones; the functions return a tensor or a tuple.
def _nchw(shape, dtype, layout, seed):
    """layout "channels_last": channels_last for 4-D tensors, a transposed view for rows."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    if layout != "channels_last" or x.dim() == 1:
        return x
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.t().contiguous().t()


CASES = {
    "reparam_kl": (
        lambda dt, lay: (
            _nchw((3, 5, 4, 3), dt, lay, 0),
            _nchw((3, 5, 4, 3), dt, lay, 1).mul(0.5),
            _nchw((3, 5, 4, 3), dt, lay, 2),
        ),
        lambda mu, lv, eps: F.reparameterize_kl(mu, lv, eps),
        lambda mu, lv, eps: R_reparam_kl.reparameterize_kl(mu, lv, eps),
    ),
    "coupling": (
        lambda dt, lay: (
            _nchw((2, 6, 4, 5), dt, lay, 0),
            _nchw((2, 6, 4, 5), dt, lay, 1).mul(0.3),
            _nchw((2, 6, 4, 5), dt, lay, 2),
        ),
        lambda x, s, t: F.affine_coupling(x, s, t, mask="checkerboard"),
        lambda x, s, t: R_coupling.affine_coupling(x, s, t, mask="checkerboard"),
    ),
    "instance_norm": (
        lambda dt, lay: (
            _nchw((2, 5, 6, 7), dt, lay, 0),
            _nchw((5,), dt, "contiguous", 1),
            _nchw((5,), dt, "contiguous", 2),
        ),
        lambda x, w, b: F.instance_norm(x, weight=w, bias=b, activation="leaky_relu", negative_slope=0.2),
        lambda x, w, b: R_instance_norm.instance_norm(x, weight=w, bias=b, activation="leaky_relu", negative_slope=0.2),
    ),
    "pixel_shuffle": (
        lambda dt, lay: (_nchw((2, 12, 3, 5), dt, lay, 0), _nchw((3,), dt, "contiguous", 1).mul(0.25)),
        lambda x, w: F.pixel_shuffle_prelu(x, w, 2),
        lambda x, w: R_pixel_shuffle.pixel_shuffle_prelu(x, w, 2),
    ),
    "grad_penalty": (
        lambda dt, lay: (_nchw((3, 4, 5, 2), dt, lay, 0),),
        lambda g: F.grad_norm_penalty(g),
        lambda g: R_grad_penalty.grad_norm_penalty(g),
    ),
    "pixel_norm": (
        lambda dt, lay: (_nchw((2, 7, 3, 4), dt, lay, 0),),
        lambda x: F.pixel_norm(x),
        lambda x: R_pixel_norm.pixel_norm(x),
    ),
    "margin_softmax": (
        lambda dt, lay: (_nchw((6, 8), dt, lay, 0), _nchw((11, 8), dt, lay, 1)),
        lambda e, w: F.margin_cross_entropy(e, w, _labels(6, 11), s=8.0),
        lambda e, w: R_margin.margin_cross_entropy(e, w, _labels(6, 11), s=8.0),
    ),
    "triplet": (
        lambda dt, lay: (_nchw((5, 9), dt, lay, 0), _nchw((5, 9), dt, lay, 1), _nchw((5, 9), dt, lay, 2)),
        lambda a, p, n: (F.triplet_margin_loss(a, p, n, margin=2.0), F.contrastive_loss(a, p, (a[:, 0] > 0).float())),
        lambda a, p, n: (
            TF.triplet_margin_loss(a, p, n, margin=2.0),
            R_triplet.contrastive_loss(a, p, (a[:, 0] > 0).to(a.dtype)),
        ),
    ),
}


def _leaves(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _run(fn, inputs, dtype):
    """Outputs and the gradients of sum(out * fixed weights) w.r.t. every input."""
    inputs = [x.detach().to(dtype).requires_grad_() for x in inputs]  # .to keeps the layout
    outs = [o for o in _leaves(fn(*inputs)) if o.is_floating_point()]
    weights = [torch.linspace(-1, 1, o.numel(), dtype=torch.float64).reshape(o.shape).to(o.dtype) for o in outs]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [o.detach() for o in outs] + [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, inputs)]


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("family", sorted(CASES))
def test_forward_and_gradients_match_reference(family, dtype, layout):
    make, fast_fn, ref_fn = CASES[family]
    inputs = make(torch.float64, layout)
    fast = _run(fast_fn, inputs, dtype)
    eager = _run(ref_fn, inputs, dtype)
    ref64 = _run(ref_fn, inputs, torch.float64)
    for i, (f, e, r) in enumerate(zip(fast, eager, ref64)):
        assert_parity(f, e, r, what=f"{family} {dtype} {layout} [{i}]")


@pytest.mark.parametrize("family", sorted(CASES))
def test_gradcheck(family):
    make, fast_fn, _ = CASES[family]
    inputs = [x.requires_grad_() for x in make(torch.float64, "contiguous")]
    assert torch.autograd.gradcheck(lambda *xs: tuple(_leaves(fast_fn(*xs))), inputs)
