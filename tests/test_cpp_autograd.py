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
import torch.nn.functional as TF

import fastgen
from fastgen import functional as F
from fastgen.reference import coupling as R_coupling
from fastgen.reference import grad_penalty as R_gp
from fastgen.reference import instance_norm as R_in
from fastgen.reference import margin_softmax as R_margin
from fastgen.reference import pixel_norm as R_pixel_norm
from fastgen.reference import pixel_shuffle as R_shuffle
from fastgen.reference import reparam_kl as R_reparam
from fastgen.reference import triplet as R_triplet
from tests._tolerance import assert_parity

FASTGEN_DIR = os.path.dirname(os.path.abspath(fastgen.__file__))

# Every differentiable op and its backward op.
OPS = [
    "reparam_kl",
    "kl_normal",
    "reparam_kl_backward",
    "affine_coupling",
    "affine_coupling_backward",
    "instance_norm",
    "instance_norm_backward",
    "pixel_shuffle",
    "pixel_unshuffle",
    "pixel_shuffle_prelu",
    "pixel_shuffle_prelu_backward",
    "interpolate",
    "interpolate_backward",
    "grad_penalty",
    "grad_penalty_backward",
    "pixel_norm",
    "pixel_norm_backward",
    "margin_softmax",
    "margin_softmax_backward",
    "triplet_margin_loss",
    "triplet_margin_loss_backward",
    "contrastive_loss",
    "contrastive_loss_backward",
    "batch_hard_triplet_loss",
    "batch_hard_triplet_loss_backward",
]


def test_every_op_is_listed():
    schemas = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("fastgen::")}
    assert {n for n in schemas if not n.startswith("_")} == set(OPS)


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
    ops = torch.ops.fastgen
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    x, w = leaf(2, 8, 4, 4), leaf(8)
    yield "instance_norm", lambda: ops.instance_norm(x, w, w, None, None, None, True, 1e-5, "relu", 0.0)[0]
    yield "pixel_shuffle_prelu", lambda: ops.pixel_shuffle_prelu(x, w[:2], 2)
    yield "pixel_shuffle", lambda: ops.pixel_unshuffle(ops.pixel_shuffle(x, 2), 2)
    mu, logvar = leaf(4, 6), leaf(4, 6)
    seed = torch.tensor([7])
    yield "reparam_kl", lambda: (lambda z, kl: z.sum() + kl)(*ops.reparam_kl(mu, logvar, None, seed, "mean"))
    yield "kl_normal", lambda: ops.kl_normal(mu, logvar, "sum")
    s, t = leaf(2, 4, 4, 4), leaf(2, 4, 4, 4)
    yield "affine_coupling", lambda: ops.affine_coupling(x, s, t, None, "channel", 0, False)[0]
    alpha = torch.rand(2).requires_grad_()
    yield "interpolate", lambda: ops.interpolate(x, x * 2, alpha)
    yield "grad_penalty", lambda: ops.grad_penalty(x, 1.0, 10.0, False, False)[0]
    yield "pixel_norm", lambda: ops.pixel_norm(x, 1e-8)
    emb, weight, labels = leaf(4, 8), leaf(5, 8), torch.tensor([0, 1, 4, 2])
    yield (
        "margin_softmax",
        lambda: sum(ops.margin_softmax(emb, weight, labels, 0, 5, 8.0, 1.0, 0.5, 0.0, False, -100, False)[:2]),
    )
    yield (
        "triplet_margin_loss",
        lambda: ops.triplet_margin_loss(emb, emb * 2, emb.flip(0), 1.0, 2.0, 1e-6, False, "mean"),
    )
    yield (
        "contrastive_loss",
        lambda: ops.contrastive_loss(emb, emb.flip(0), torch.tensor([1.0, 0.0, 1.0, 0.0]), 1.0, 1e-6, "mean"),
    )
    yield (
        "batch_hard_triplet_loss",
        lambda: ops.batch_hard_triplet_loss(emb, torch.tensor([0, 0, 1, 1]), 0.3, False, "mean")[0],
    )


@pytest.mark.parametrize("case", list(_tiny_cases()), ids=lambda c: c[0])
def test_no_python_runs_in_forward_and_backward(case):
    _, fn = case

    def step():
        out = fn()
        out.backward(torch.ones_like(out))

    step()  # first call: lazy imports, op lookups
    assert _python_frames_in_fastgen(step) == []


def test_double_backward_runs_no_python_either():
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    w = torch.randn(8, requires_grad=True)

    def step():
        out = torch.ops.fastgen.instance_norm(x, w, None, None, None, None, True, 1e-5, "leaky_relu", 0.2)[0]
        (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        gx.square().sum().backward()

    step()
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
            return impl(
                x, *stats, weight=w, bias=b, use_input_stats=use_input_stats, activation=activation, negative_slope=0.2
            )

        return fn

    _second_order_parity(call(F.instance_norm), call(R_in.instance_norm), [x, w, b], f"instance_norm {activation}")


def _inputs(*shapes, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(s, generator=g, dtype=torch.float64) * scale).float() for s in shapes]


def test_reparam_kl_second_order():
    def call(impl):
        return lambda mu, logvar, eps: (lambda z, kl: z.sum(1) + kl)(*impl(mu, logvar, eps, reduction="none"))

    mu, logvar, eps = _inputs((4, 6), (4, 6), (4, 6), scale=0.5)
    _second_order_parity(
        call(F.reparameterize_kl), call(R_reparam.reparameterize_kl), [mu, logvar, eps], "reparameterize_kl"
    )


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
@pytest.mark.parametrize("inverse", [False, True])
def test_affine_coupling_second_order(mask, inverse):
    s_shape = (2, 2, 3, 3) if mask == "channel" else (2, 4, 3, 3)

    def call(impl):
        def fn(x, s, t, scale):
            y, logdet = impl(x, s, t, mask=mask, scale=scale, inverse=inverse)
            return torch.cat([y.flatten(), logdet.to(y.dtype)])

        return fn

    x, s, t, scale = _inputs((2, 4, 3, 3), s_shape, s_shape, (s_shape[1], 1, 1), seed=1, scale=0.5)
    _second_order_parity(
        call(F.affine_coupling),
        call(R_coupling.affine_coupling),
        [x, s, t, scale],
        f"affine_coupling {mask} inverse={inverse}",
    )


def test_pixel_shuffle_prelu_second_order():
    x, w = _inputs((2, 8, 3, 3), (2,), seed=2)
    _second_order_parity(
        lambda x, w: F.pixel_shuffle_prelu(x, w, 2),
        lambda x, w: R_shuffle.pixel_shuffle_prelu(x, w, 2),
        [x, w],
        "pixel_shuffle_prelu",
    )


@pytest.mark.parametrize("one_sided", [False, True])
def test_grad_penalty_second_order(one_sided):
    (g,) = _inputs((3, 5), seed=3, scale=0.5)
    _second_order_parity(
        lambda g: F.grad_norm_penalty(g, one_sided=one_sided),
        lambda g: R_gp.grad_norm_penalty(g, one_sided=one_sided),
        [g],
        "grad_norm_penalty",
    )
    real, fake = _inputs((3, 5), (3, 5), seed=4)
    alpha = torch.rand(3, generator=torch.Generator().manual_seed(5))
    _second_order_parity(
        lambda r, f, a: F.interpolate(r, f, a) ** 2,
        lambda r, f, a: R_gp.interpolate(r, f, a) ** 2,
        [real, fake, alpha],
        "interpolate",
    )


def test_pixel_norm_second_order():
    (x,) = _inputs((2, 4, 3, 3), seed=6)
    _second_order_parity(F.pixel_norm, R_pixel_norm.pixel_norm, [x], "pixel_norm")


@pytest.mark.parametrize("straight_through", [False, True])
def test_margin_cross_entropy_second_order(straight_through):
    emb, weight = _inputs((4, 8), (6, 8), seed=7)
    labels = torch.tensor([0, 5, 2, 3])

    def call(impl):
        return lambda e, w: impl(e, w, labels, s=8.0, reduction="none", straight_through=straight_through)

    _second_order_parity(
        call(F.margin_cross_entropy),
        call(R_margin.margin_cross_entropy),
        [emb, weight],
        f"margin_cross_entropy straight_through={straight_through}",
    )


def test_siamese_losses_second_order():
    a, p, n = _inputs((4, 5), (4, 5), (4, 5), seed=8)
    _second_order_parity(
        lambda a, p, n: F.triplet_margin_loss(a, p, n, reduction="none"),
        lambda a, p, n: TF.triplet_margin_loss(a, p, n, reduction="none"),
        [a, p, n],
        "triplet",
    )
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    _second_order_parity(
        lambda a, b: F.contrastive_loss(a, b, y, 3.0, reduction="none"),
        lambda a, b: R_triplet.contrastive_loss(a, b, y, 3.0, reduction="none"),
        [a, n],
        "contrastive",
    )
    (e,) = _inputs((6, 5), seed=9)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    _second_order_parity(
        lambda e: F.batch_hard_triplet_loss(e, labels, 0.3, reduction="none"),
        lambda e: R_triplet.batch_hard_triplet_loss(e, labels, 0.3, reduction="none"),
        [e],
        "batch_hard",
    )


def test_an_output_that_reaches_no_loss_passes_no_gradient():
    # reparam_kl: with z alone in the loss, kl's terms are absent (0 * an infinite mu would be NaN),
    # and with kl alone eps gets no gradient (it reaches the loss only through z).
    mu = torch.tensor([[float("inf"), 1.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, 2.0]], requires_grad=True)
    eps = torch.ones(1, 2, requires_grad=True)
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    grad_mu, grad_eps = torch.autograd.grad(z.sum(), (mu, eps), retain_graph=True)
    assert torch.equal(grad_mu, torch.ones(1, 2)) and torch.isfinite(grad_eps).all()
    (grad_eps,) = torch.autograd.grad(kl.sum(), (eps,), allow_unused=True, materialize_grads=True)
    assert torch.equal(grad_eps, torch.zeros(1, 2))
    # affine coupling: logdet alone gives the same gradients as eager's.
    x, s, t = (torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    s_half, t_half = s[:, :2].detach().requires_grad_(), t[:, :2].detach().requires_grad_()
    fast = torch.autograd.grad(
        F.affine_coupling(x, s_half, t_half)[1].sum(), (x, s_half, t_half), allow_unused=True, materialize_grads=True
    )
    eager = torch.autograd.grad(
        R_coupling.affine_coupling(x, s_half, t_half)[1].sum(),
        (x, s_half, t_half),
        allow_unused=True,
        materialize_grads=True,
    )
    for f, e in zip(fast, eager):
        assert torch.equal(f, e)
