"""GAN training core: fastgen.functional.interpolate / fade_in / grad_norm_penalty / r1_penalty,
the GAN losses, the fastgen.gradient_penalty / r1_regularization / clip_weights_ recipes, and
the fastgen::interpolate and fastgen::grad_penalty ops (C++ and Triton)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fastgen
from fastgen import functional as F
from fastgen.reference import grad_penalty as R
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
# Odd shapes: a single column, rows that are not whole vectors, 1-D, and >2-D.
SHAPES = [(5, 7), (3, 1), (1, 33), (4, 3, 5, 7), (7,), (2, 3, 17, 9)]
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]
# (target, weight, one_sided): WGAN-GP, one-sided (WGAN-LP), R1 (target 0), a large target.
PENALTIES = [(1.0, 10.0, False), (1.0, 10.0, True), (0.0, 5.0, False), (3.0, 0.5, True)]


def _randn(shape, dtype=torch.float64, scale=1.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)


def _grads_of(fn, *tensors, upstream=None):
    """fn's output and the gradients of sum(upstream * output) w.r.t. the tensors."""
    leaves = [t.detach().requires_grad_() for t in tensors]
    out = fn(*leaves)
    up = torch.ones_like(out) if upstream is None else upstream
    return (out.detach(), *torch.autograd.grad(out, leaves, up))


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last" and t.dim() == 4:
        return t.to(memory_format=torch.channels_last)
    if layout == "transposed" and t.dim() >= 3:
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    if layout == "sliced":
        return torch.cat([t, t], dim=-1)[..., ::2]
    return t


# --------------------------------------------------------------------------- interpolate


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_interpolate_forward_and_gradients_match_reference(shape, dtype):
    real, fake, grad = _randn(shape, dtype), _randn(shape, dtype), _randn(shape, dtype)
    alpha = torch.rand(shape[0], dtype=torch.float64).to(dtype)
    fast = _grads_of(F.interpolate, real, fake, alpha, upstream=grad)
    eager = _grads_of(R.interpolate, real, fake, alpha, upstream=grad)
    ref = _grads_of(R.interpolate, real.double(), fake.double(), alpha.double(), upstream=grad.double())
    for name, f, e, r in zip(("x_hat", "grad_real", "grad_fake", "grad_alpha"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {dtype} {shape}")


def test_interpolate_draws_alpha_like_the_reference():
    real, fake = torch.randn(64, 3, 4, 4), torch.randn(64, 3, 4, 4)
    a = F.interpolate(real, fake, generator=torch.Generator().manual_seed(7))
    b = R.interpolate(real, fake, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)
    # alpha per sample, uniform in [0, 1): x_hat of real=1, fake=0 is alpha itself.
    alpha = F.interpolate(torch.ones(4000, 2), torch.zeros(4000, 2))
    assert torch.equal(alpha[:, 0], alpha[:, 1])
    assert 0 <= alpha.min() and alpha.max() < 1
    assert abs(alpha.mean().item() - 0.5) < 0.03 and abs(alpha.var().item() - 1 / 12) < 0.01
    torch.manual_seed(3)
    c = F.interpolate(real, fake)
    torch.manual_seed(3)
    assert torch.equal(c, F.interpolate(real, fake))


def test_interpolate_alpha_forms_and_fade_in():
    real, fake = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    alpha = torch.rand(3)
    want = R.interpolate(real, fake, alpha)
    torch.testing.assert_close(F.interpolate(real, fake, alpha.reshape(3, 1, 1)), want)
    torch.testing.assert_close(F.interpolate(real, fake, alpha.double()), want)  # cast to real's dtype
    torch.testing.assert_close(F.interpolate(real, fake, 0.25), R.interpolate(real, fake, 0.25))
    torch.testing.assert_close(F.interpolate(real, fake, torch.tensor(0.25)), R.interpolate(real, fake, 0.25))
    new, old = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for a in (0.0, 0.3, 1.0):
        torch.testing.assert_close(F.fade_in(new, old, a), R.fade_in(new, old, a))
    # alpha as a tensor that requires grad (e.g. learned) gets its gradient through the expand.
    a = torch.tensor(0.3, requires_grad=True)
    F.fade_in(new, old, a).sum().backward()
    assert_parity(a.grad, (new - old).sum(), (new.double() - old.double()).sum(), what="grad of alpha")


def test_interpolate_layouts():
    real = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    fake = torch.randn(2, 3, 4, 5)
    alpha = torch.rand(2)
    out = F.interpolate(real, fake, alpha)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, R.interpolate(real, fake, alpha))
    real_t, fake_t = torch.randn(3, 5, 4).transpose(1, 2), torch.randn(3, 8, 5)[:, ::2]
    torch.testing.assert_close(
        F.interpolate(real_t, fake_t, alpha.repeat(2)[:3]), R.interpolate(real_t, fake_t, alpha.repeat(2)[:3])
    )


# --------------------------------------------------------------------------- penalty


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("target,weight,one_sided", PENALTIES)
def test_penalty_forward_and_gradient_match_reference(shape, dtype, target, weight, one_sided):
    # Norms spread on both sides of the target, so the one-sided clip is exercised.
    grads = _randn(shape, dtype) * torch.linspace(0.1, 2.0, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1)).to(dtype)

    def run(fn, g):
        return fn(g, target=target, weight=weight, one_sided=one_sided)

    fast = _grads_of(lambda g: run(F.grad_norm_penalty, g), grads)
    eager = _grads_of(lambda g: run(R.grad_norm_penalty, g), grads)
    ref = _grads_of(lambda g: run(R.grad_norm_penalty, g), grads.double())
    for name, f, e, r in zip(("penalty", "grad"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {dtype} {shape} target={target} one_sided={one_sided}")


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_r1_penalty_matches_reference(dtype):
    grads = _randn((6, 3, 5, 5), dtype)
    fast = _grads_of(lambda g: F.r1_penalty(g, 10.0), grads)
    eager = _grads_of(lambda g: R.r1_penalty(g, 10.0), grads)
    ref = _grads_of(lambda g: R.r1_penalty(g, 10.0), grads.double())
    for f, e, r in zip(fast, eager, ref):
        assert_parity(f, e, r, what=f"r1 {dtype}")
    g32 = grads.float()
    assert_parity(
        F.grad_norm_penalty(g32, target=0.0, weight=2.0),
        F.r1_penalty(g32, 4.0),
        R.r1_penalty(grads.double(), 4.0),
        what="r1 as grad_norm_penalty",
    )


def test_zero_gradient_gives_no_nan():
    # sqrt at a zero norm: fastgen's norm is sqrt(sum g^2 + 1e-12), finite with a finite gradient.
    g = torch.zeros(4, 3, 8, 8, requires_grad=True)
    penalty = F.grad_norm_penalty(g)
    torch.testing.assert_close(penalty, torch.tensor(10.0 * (1e-6 - 1) ** 2))
    (grad,) = torch.autograd.grad(penalty, g)
    assert torch.isfinite(grad).all() and not grad.any()
    # What the naive eager code, sqrt without the floor, does there: NaN.
    naive = 10 * ((g.flatten(1).pow(2).sum(1).sqrt() - 1) ** 2).mean()
    assert torch.isnan(torch.autograd.grad(naive, g)[0]).any()


def test_penalty_nan_and_inf_propagate():
    g = torch.randn(3, 5)
    g[1, 2] = float("nan")
    assert torch.isnan(F.grad_norm_penalty(g))
    g = torch.randn(3, 5)
    g[0, 0] = float("inf")
    assert F.grad_norm_penalty(g) == float("inf")


def test_norms_output_and_its_gradient():
    grads = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    penalty, norms, _ = ops.grad_penalty(grads, 1.0, 10.0, False, False)
    torch.testing.assert_close(norms, torch.sqrt(grads.detach().pow(2).sum(1) + 1e-12))
    assert (
        norms.dtype == torch.float64
        and ops.grad_penalty(grads.float(), 1.0, 10.0, False, False)[1].dtype == torch.float32
    )
    assert ops.grad_penalty(grads.bfloat16(), 1.0, 10.0, False, False)[1].dtype == torch.float32
    w = torch.randn(4, dtype=torch.float64)
    (g,) = torch.autograd.grad((norms * w).sum(), grads)
    torch.testing.assert_close(g, w[:, None] * grads.detach() / norms.detach()[:, None])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(6, 5, 7), (2, 300_000), (1, 40)])
def test_gradient_computed_in_the_forward(dtype, shape):
    # with_grad: the forward also writes d(penalty)/d(grads) for an upstream gradient of 1, exactly
    # what the backward op computes (rows fused per thread, or long rows / few rows in two passes).
    grads = _randn(shape, dtype)
    for target, weight, one_sided in PENALTIES:
        penalty, norms, d_grads = ops.grad_penalty(grads, target, weight, one_sided, True)
        without = ops.grad_penalty(grads, target, weight, one_sided, False)
        assert torch.equal(penalty, without[0]) and torch.equal(norms, without[1]) and without[2].numel() == 0
        want = ops.grad_penalty_backward(torch.tensor(1.0, dtype=dtype), None, grads, norms, target, weight, one_sided)
        assert torch.equal(d_grads, want)


def _ops_called(fn) -> list:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    recorder = Recorder()
    with recorder:
        fn()
    return recorder.names


def test_backward_returns_the_forward_gradient_when_the_upstream_is_one():
    g = torch.randn(4, 3, 5, requires_grad=True)
    (plain,) = torch.autograd.grad(F.grad_norm_penalty(g), g)
    assert not any(
        "grad_penalty_backward" in n for n in _ops_called(lambda: torch.autograd.grad(F.grad_norm_penalty(g), g))
    )
    # Any other upstream gradient (a weighted loss, a GradScaler's scale) runs the backward op.
    for scale in (2.0, 0.0, -1.5):
        names = _ops_called(lambda: torch.autograd.grad(scale * F.grad_norm_penalty(g), g))
        assert any("grad_penalty_backward" in n for n in names)
        (scaled,) = torch.autograd.grad(scale * F.grad_norm_penalty(g), g)
        g64 = g.detach().double().requires_grad_()
        assert_parity(
            scaled,
            scale * plain,
            torch.autograd.grad(scale * R.grad_norm_penalty(g64), g64)[0],
            what=f"upstream {scale}",
        )
    # retain_graph: the saved gradient is returned again, unchanged.
    penalty = F.grad_norm_penalty(g)
    first = torch.autograd.grad(penalty, g, retain_graph=True)[0].clone()
    torch.testing.assert_close(torch.autograd.grad(penalty, g)[0], first)
    # No gradient needed: the forward writes nothing extra.
    with torch.no_grad():
        assert all(t.numel() <= 4 for t in ops.grad_penalty(g, 1.0, 10.0, False, False)[1:])
    assert not F._penalty_grad_in_forward(g.detach())


def test_rows_longer_than_one_chunk_and_thread_count():
    grads = _randn((3, 40_003), torch.float32)
    ref = R.grad_norm_penalty(grads.double())
    assert_parity(F.grad_norm_penalty(grads), R.grad_norm_penalty(grads), ref, what="long rows")
    real, fake, alpha = torch.randn(64, 50_000), torch.randn(64, 50_000), torch.rand(64)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            g = torch.randn(64, 50_000, generator=torch.Generator().manual_seed(1))
            results.append(
                (
                    ops.grad_penalty(g, 1.0, 10.0, False, True),
                    ops.interpolate(real, fake, alpha),
                    ops.interpolate_backward(g, real, fake, alpha, [True, True, True]),
                )
            )
    finally:
        torch.set_num_threads(before)
    for a, b in zip(torch.utils._pytree.tree_leaves(results[0]), torch.utils._pytree.tree_leaves(results[1])):
        assert torch.equal(a, b)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(0, 5),
    features=st.lists(st.integers(1, 9), min_size=0, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    layouts=st.tuples(*[st.sampled_from(["contiguous", "transposed", "sliced", "channels_last"])] * 2),
    penalty=st.sampled_from(PENALTIES),
)
def test_random_shapes_dtypes_and_layouts(batch, features, dtype, layouts, penalty):
    shape = (batch, *features)
    target, weight, one_sided = penalty
    real, fake = (_layout(_randn(shape, dtype), lay) for lay in layouts)
    alpha = torch.rand(batch).to(dtype)
    assert_parity(
        F.interpolate(real, fake, alpha),
        R.interpolate(real, fake, alpha),
        R.interpolate(real.double(), fake.double(), alpha.double()),
        what="interpolate",
    )
    kwargs = dict(target=target, weight=weight, one_sided=one_sided)
    assert_parity(
        F.grad_norm_penalty(real, **kwargs),
        R.grad_norm_penalty(real, **kwargs),
        R.grad_norm_penalty(real.double(), **kwargs),
        what="penalty",
    )


# --------------------------------------------------------------------------- zero sizes


def test_zero_size_batch_and_features():
    g = torch.zeros(0, 3, 4, 4, requires_grad=True)
    penalty = F.grad_norm_penalty(g)
    assert torch.isnan(penalty) and torch.isnan(R.grad_norm_penalty(g))  # mean of nothing, as torch
    (grad,) = torch.autograd.grad(penalty, g)
    assert grad.shape == g.shape
    real = torch.zeros(0, 5, requires_grad=True)
    x = F.interpolate(real, torch.zeros(0, 5))
    assert x.shape == (0, 5)
    x.sum().backward()
    assert real.grad.shape == (0, 5)
    # Samples with no elements have norm sqrt(1e-12).
    torch.testing.assert_close(F.grad_norm_penalty(torch.zeros(3, 0)), R.grad_norm_penalty(torch.zeros(3, 0)))


# --------------------------------------------------------------------------- gradcheck


def test_gradcheck_and_gradgradcheck_interpolate():
    real, fake = (_randn((3, 2, 5)).requires_grad_() for _ in range(2))
    alpha = torch.rand(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(F.interpolate, (real, fake, alpha))
    assert torch.autograd.gradgradcheck(F.interpolate, (real, fake, alpha))
    # Only some inputs differentiable (the WGAN-GP case: neither real nor fake).
    assert torch.autograd.gradgradcheck(lambda a: F.interpolate(real.detach(), fake.detach(), a), (alpha,))
    assert torch.autograd.gradgradcheck(lambda r: F.interpolate(r, fake.detach(), alpha.detach()), (real,))


@pytest.mark.parametrize("target,weight,one_sided", PENALTIES)
def test_gradcheck_and_gradgradcheck_penalty(target, weight, one_sided):
    grads = _randn((4, 3, 2)) * torch.tensor([0.2, 0.5, 1.0, 2.0], dtype=torch.float64)[:, None, None]
    grads.requires_grad_()

    def both(g):  # the penalty and the norms, so both outputs' gradients are checked
        return ops.grad_penalty(g, target, weight, one_sided, False)[:2]

    assert torch.autograd.gradcheck(both, (grads,))
    assert torch.autograd.gradgradcheck(both, (grads,))

    def penalty(g):  # the functional path: the gradient is computed in the forward
        return F.grad_norm_penalty(g, target=target, weight=weight, one_sided=one_sided)

    assert torch.autograd.gradcheck(penalty, (grads,))
    assert torch.autograd.gradgradcheck(penalty, (grads,))


def _small_critic(dtype=torch.float64):
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 1)).to(dtype)


def _input_gradient_params(critic):
    """The critic parameters its input gradient depends on (all but the last bias)."""
    return list(critic.parameters())[:-1]


def test_gradient_penalty_trains_the_critic_like_the_reference():
    critic = _small_critic(torch.float32)
    real, fake, alpha = torch.randn(6, 2, 4, 4), torch.randn(6, 2, 4, 4), torch.rand(6)

    def step(recipe):
        penalty = recipe(critic, real, fake, alpha=alpha)
        return penalty.detach(), torch.autograd.grad(penalty, _input_gradient_params(critic))

    fast, eager = step(fastgen.gradient_penalty), step(R.gradient_penalty)
    critic64 = copy.deepcopy(critic).double()
    penalty64 = R.gradient_penalty(critic64, real.double(), fake.double(), alpha=alpha.double())
    ref = penalty64.detach(), torch.autograd.grad(penalty64, _input_gradient_params(critic64))
    assert_parity(fast[0], eager[0], ref[0], what="penalty")
    assert_parity_tree(fast[1], eager[1], ref[1], what="critic gradients")
    # Drawn alpha from the same generator: the same penalty.
    a = fastgen.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(2), weight=3.0, target=0.5)
    b = R.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(2), weight=3.0, target=0.5)
    drawn = torch.rand(6, generator=torch.Generator().manual_seed(2)).double()
    ref = R.gradient_penalty(critic64, real.double(), fake.double(), alpha=drawn, weight=3.0, target=0.5)
    assert_parity(a.detach(), b.detach(), ref.detach(), what="penalty, drawn alpha")


def test_gradient_penalty_third_order():
    # gradgradcheck of critic weights -> penalty differentiates the penalty's backward op itself.
    real, fake = torch.randn(3, 2, 2, 2, dtype=torch.float64), torch.randn(3, 2, 2, 2, dtype=torch.float64)
    alpha = torch.rand(3, dtype=torch.float64)
    v = torch.randn(4, 1, dtype=torch.float64)

    def penalty_of(w, recipe):
        return recipe(lambda x: torch.tanh(x.flatten(1) @ w.T) @ v, real, fake, alpha=alpha, target=0.5)

    w = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: penalty_of(w, fastgen.gradient_penalty), (w,))
    assert torch.autograd.gradgradcheck(lambda w: penalty_of(w, fastgen.gradient_penalty), (w,))
    torch.testing.assert_close(penalty_of(w, fastgen.gradient_penalty), penalty_of(w, R.gradient_penalty))


def test_r1_regularization_matches_reference():
    critic = _small_critic(torch.float32)
    real = torch.randn(5, 2, 4, 4)
    fast = fastgen.r1_regularization(critic, real, gamma=10.0)
    eager = R.r1_regularization(critic, real, gamma=10.0)
    critic64 = copy.deepcopy(critic).double()
    ref = R.r1_regularization(critic64, real.double(), gamma=10.0)
    assert_parity(fast.detach(), eager.detach(), ref.detach(), what="r1")
    assert_parity_tree(
        torch.autograd.grad(fast, _input_gradient_params(critic)),
        torch.autograd.grad(eager, _input_gradient_params(critic)),
        torch.autograd.grad(ref, _input_gradient_params(critic64)),
        what="critic gradients",
    )


def test_gradient_penalty_with_a_grad_scaler():
    # AMP recipe: scale the critic output before autograd.grad, unscale before the norm.
    critic = _small_critic(torch.float32)
    real, fake, alpha = torch.randn(4, 2, 4, 4), torch.randn(4, 2, 4, 4), torch.rand(4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    plain = fastgen.gradient_penalty(critic, real, fake, alpha=alpha)
    scaled = fastgen.gradient_penalty(critic, real, fake, alpha=alpha, scaler=scaler)
    torch.testing.assert_close(scaled, plain)
    torch.testing.assert_close(
        fastgen.r1_regularization(critic, real, 1.0, scaler=scaler), fastgen.r1_regularization(critic, real, 1.0)
    )


# --------------------------------------------------------------------------- GAN losses


D_KINDS = ["bce", "lsgan", "hinge", "wasserstein"]
G_KINDS = ["nonsaturating", "minimax", "lsgan", "hinge", "wasserstein"]


@pytest.mark.parametrize("kind", D_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_discriminator_losses_match_reference(kind, dtype):
    real, fake = _randn((9, 1), dtype, 3.0), _randn((9,), dtype, 3.0)
    fast = _grads_of(lambda r, f: F.discriminator_loss(r, f, kind), real, fake)
    eager = _grads_of(lambda r, f: R.discriminator_loss(r, f, kind), real, fake)
    ref = _grads_of(lambda r, f: R.discriminator_loss(r, f, kind), real.double(), fake.double())
    for f, e, r in zip(fast, eager, ref):
        assert_parity(f, e, r, what=f"d {kind} {dtype}")


@pytest.mark.parametrize("kind", G_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_generator_losses_match_reference(kind, dtype):
    fake = _randn((9,), dtype, 3.0)
    fast = _grads_of(lambda f: F.generator_loss(f, kind), fake)
    eager = _grads_of(lambda f: R.generator_loss(f, kind), fake)
    ref = _grads_of(lambda f: R.generator_loss(f, kind), fake.double())
    for f, e, r in zip(fast, eager, ref):
        assert_parity(f, e, r, what=f"g {kind} {dtype}")


def test_losses_are_stable_at_extreme_logits():
    logits = torch.tensor([-200.0, -50.0, 0.0, 50.0, 200.0], requires_grad=True)
    for loss in [F.discriminator_loss(logits, logits, k) for k in D_KINDS] + [
        F.generator_loss(logits, k) for k in G_KINDS
    ]:
        (g,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
    # -log(sigmoid(200)) is ~0 and -log(sigmoid(-200)) = 200, exactly in the softplus form.
    torch.testing.assert_close(F.generator_loss(torch.tensor([-200.0]), "nonsaturating"), torch.tensor(200.0))
    torch.testing.assert_close(F.generator_loss(torch.tensor([200.0]), "minimax"), torch.tensor(-200.0))


# --------------------------------------------------------------------------- clip_weights_


def test_clip_weights_matches_reference():
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        for p in a.parameters():
            p.mul_(0.1).add_(torch.randn_like(p) * 0.02)
    b.load_state_dict(a.state_dict())
    fastgen.clip_weights_(a, 0.01)
    R.clip_weights_(b, 0.01)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q) and p.abs().max() <= 0.01
    params = [torch.randn(5, requires_grad=True), torch.randn(2, 3, dtype=torch.float64)]
    fastgen.clip_weights_(params, clip=0.5)
    assert all(p.abs().max() <= 0.5 for p in params) and params[0].requires_grad
    fastgen.clip_weights_(iter(()), 0.1)  # nothing to clip
    t = torch.randn(4)
    fastgen.clip_weights_(t, 0.0)
    assert not t.any()


# --------------------------------------------------------------------------- torch.library


def test_opcheck():
    real, fake = torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 4, 5, requires_grad=True)
    alpha = torch.rand(3, requires_grad=True)
    torch.library.opcheck(ops.interpolate, (real, fake, alpha))
    cl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    torch.library.opcheck(ops.interpolate, (cl, torch.randn(2, 3, 4, 5), torch.rand(2)))
    g = torch.randn(3, 4, 5)
    for mask in ([True, True, True], [True, False, False], [False, False, True]):
        torch.library.opcheck(ops.interpolate_backward, (g, real.detach(), fake.detach(), alpha.detach(), mask))
    torch.library.opcheck(ops.interpolate_backward, (g, None, None, alpha.detach(), [True, True, False]))
    grads = torch.randn(3, 4, 5, requires_grad=True)
    for target, weight, one_sided in PENALTIES:
        for with_grad in (False, True):
            torch.library.opcheck(ops.grad_penalty, (grads, target, weight, one_sided, with_grad))
    norms = ops.grad_penalty(grads.detach(), 1.0, 10.0, False, False)[1]
    torch.library.opcheck(
        ops.grad_penalty_backward, (torch.tensor(1.0), torch.randn(3), grads.detach(), norms, 1.0, 10.0, True)
    )
    torch.library.opcheck(ops.grad_penalty_backward, (torch.tensor(2.0), None, grads.detach(), norms, 1.0, 10.0, False))
    torch.library.opcheck(ops.grad_penalty, (cl, 1.0, 10.0, False, True))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def step(real, fake, grads):
        x_hat = F.interpolate(real, fake, torch.full((real.shape[0],), 0.3))
        return F.grad_norm_penalty(grads * x_hat) + F.r1_penalty(grads, 2.0)

    compiled = torch.compile(step, fullgraph=True)
    real, fake, grads = (torch.randn(4, 3, 8, 8, requires_grad=True) for _ in range(3))
    out = compiled(real, fake, grads)
    ref = step(real, fake, grads)
    inputs64 = [t.detach().double().requires_grad_() for t in (real, fake, grads)]
    ref64 = step(*inputs64)
    assert_parity(out.detach(), ref.detach(), ref64.detach(), what="compiled output")
    assert_parity_tree(
        torch.autograd.grad(out, (real, fake, grads)),
        torch.autograd.grad(ref, (real, fake, grads)),
        torch.autograd.grad(ref64, inputs64),
        what="compiled grads",
    )


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    x = torch.randn(3, 4)
    _raises(
        r"fastgen.interpolate: fake must have the shape of real \(3, 4\), got \(3, 5\)",
        F.interpolate,
        x,
        torch.randn(3, 5),
    )
    _raises(r"fake must have the dtype of real", F.interpolate, x, x.double())
    _raises(r"real must be a floating-point tensor", F.interpolate, torch.ones(3, 4, dtype=torch.long), x)
    _raises(r"real must have a batch dimension", F.interpolate, torch.tensor(1.0), torch.tensor(1.0))
    _raises(r"alpha must have one value per sample, shape \(3,\) .* got \(4,\)", F.interpolate, x, x, torch.rand(4))
    _raises(r"alpha must be a number, a tensor or None, got str", F.interpolate, x, x, "0.5")
    _raises(r"generator must be a torch.Generator", F.interpolate, x, x, generator=1)
    _raises(r"fastgen.fade_in: old must have the shape of new", F.fade_in, x, torch.randn(2, 4), 0.5)
    _raises(
        r"fastgen.grad_norm_penalty: grads must be a floating-point tensor",
        F.grad_norm_penalty,
        torch.ones(3, dtype=torch.long),
    )
    _raises(r"grads must have a batch dimension", F.grad_norm_penalty, torch.tensor(1.0))
    _raises(r"target must be a finite number >= 0, got -1", F.grad_norm_penalty, x, target=-1.0)
    _raises(r"weight must be a number, got str", F.grad_norm_penalty, x, weight="10")
    _raises(r"weight must be a finite number, got nan", F.grad_norm_penalty, x, weight=float("nan"))
    _raises(r"one_sided must be a bool", F.grad_norm_penalty, x, one_sided=1)
    _raises(r"fastgen.r1_penalty: grads must be a torch.Tensor", F.r1_penalty, [1.0], 1.0)
    _raises(r"fastgen.discriminator_loss: kind must be one of .* got 'wgan'", F.discriminator_loss, x, x, "wgan")
    _raises(r"fastgen.generator_loss: kind must be one of .* got 'bce'", F.generator_loss, x, "bce")
    _raises(r"fake_logits must be a torch.Tensor", F.generator_loss, 1.0)
    _raises(r"fastgen.clip_weights_: clip must be a number >= 0, got -0.1", fastgen.clip_weights_, [x], -0.1)
    _raises(r"params\[1\] must be a torch.Tensor", fastgen.clip_weights_, [x, 3.0])
    _raises(r"fastgen.gradient_penalty: critic must be callable", fastgen.gradient_penalty, 3, x, x)
    _raises(
        r"fastgen.gradient_penalty: critic must return a tensor, got tuple",
        fastgen.gradient_penalty,
        lambda t: (t,),
        x,
        x,
    )
    _raises(r"fastgen.r1_regularization: real must be a torch.Tensor", fastgen.r1_regularization, lambda t: t, 1.0, 1.0)


def test_bad_inputs_to_the_ops_directly():
    x = torch.randn(3, 4)
    _raises(r"fastgen.interpolate: alpha must have shape \(3,\)", ops.interpolate, x, x, torch.rand(3, 1))
    _raises(
        r"fastgen.interpolate: alpha must have dtype (torch.float32|Float), got (torch.float64|Double)",
        ops.interpolate,
        x,
        x,
        torch.rand(3, dtype=torch.float64),
    )
    _raises(
        r"fastgen.interpolate_backward: the gradient of alpha needs real and fake",
        ops.interpolate_backward,
        x,
        None,
        None,
        torch.rand(3),
        [False, False, True],
    )
    _raises(r"fastgen.grad_penalty: target must be a finite number >= 0", ops.grad_penalty, x, -1.0, 1.0, False, False)
    _raises(
        r"fastgen.grad_penalty: weight must be a finite number", ops.grad_penalty, x, 1.0, float("inf"), False, True
    )
    _raises(
        r"fastgen.grad_penalty_backward: norms must have shape \(3,\)",
        ops.grad_penalty_backward,
        torch.tensor(1.0),
        None,
        x,
        torch.ones(4),
        1.0,
        1.0,
        False,
    )
    _raises(
        r"fastgen.grad_penalty_backward: norms must have dtype (torch.float32|Float)",
        ops.grad_penalty_backward,
        torch.tensor(1.0),
        None,
        x.bfloat16(),
        torch.ones(3, dtype=torch.bfloat16),
        1.0,
        1.0,
        False,
    )
    _raises(
        r"fastgen.grad_penalty_backward: grad_penalty must be a scalar",
        ops.grad_penalty_backward,
        torch.ones(2),
        None,
        x,
        torch.ones(3),
        1.0,
        1.0,
        False,
    )
    # The fake impls make the same checks (what torch.compile and meta tensors see).
    meta = torch.empty(3, 4, device="meta")
    _raises(
        r"fastgen.interpolate: fake must have the shape of real",
        ops.interpolate,
        meta,
        torch.empty(4, 3, device="meta"),
        torch.empty(3, device="meta"),
    )
    _raises(
        r"fastgen.grad_penalty: target must be a finite number >= 0", ops.grad_penalty, meta, -2.0, 1.0, False, False
    )
    _raises(
        r"fastgen.grad_penalty_backward: norms must have shape",
        ops.grad_penalty_backward,
        torch.empty((), device="meta"),
        None,
        meta,
        torch.empty(2, device="meta"),
        1.0,
        1.0,
        False,
    )
    penalty, norms, d_grads = ops.grad_penalty(meta, 1.0, 10.0, False, True)
    assert penalty.shape == () and norms.shape == (3,) and norms.device.type == "meta" and d_grads.shape == (3, 4)


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("grad_penalty")  # the ops' CUDA functions: checks + Triton launchers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 70), (2, 3, 5, 7), (1, 1)])
def test_triton_matches_cpu(dtype, shape):
    kernels = _triton()
    real, fake, grad = _randn(shape, dtype), _randn(shape, dtype), _randn(shape, dtype)
    alpha = torch.rand(shape[0]).to(dtype)
    real64, fake64, grad64, alpha64 = (t.double() for t in (real, fake, grad, alpha))  # the CPU kernel's float64 run
    got, want = kernels.interpolate(real, fake, alpha), ops.interpolate(real, fake, alpha)
    assert got.stride() == want.stride()
    assert_kernels_agree(got, want, ops.interpolate(real64, fake64, alpha64), what=f"interpolate {dtype} {shape}")
    for mask in ([True, True, True], [False, True, False]):
        got = kernels.interpolate_backward(grad, real, fake, alpha, mask)
        want = ops.interpolate_backward(grad, real, fake, alpha, mask)
        for a, b in zip(got, want):
            assert (a is None and b is None) or a.shape == b.shape
        assert_kernels_agree(
            got,
            want,
            ops.interpolate_backward(grad64, real64, fake64, alpha64, mask),
            what=f"interpolate_backward {dtype} {shape} {mask}",
        )
    for target, weight, one_sided in PENALTIES:
        what = f"{dtype} {shape} target={target} weight={weight} one_sided={one_sided}"
        got, want = (
            kernels.grad_penalty(grad, target, weight, one_sided, True),
            ops.grad_penalty(grad, target, weight, one_sided, True),
        )
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.shape == b.shape
        assert_kernels_agree(got, want, ops.grad_penalty(grad64, target, weight, one_sided, True), what=what)
        norms, norms64 = want[1], ops.grad_penalty(grad64, target, weight, one_sided, True)[1]
        gp, gn = torch.tensor(0.7).to(dtype), torch.randn(shape[0]).to(norms.dtype)
        for args in ((gp, gn), (gp, None), (None, gn)):
            args64 = [None if a is None else a.double() for a in args]
            assert_kernels_agree(
                kernels.grad_penalty_backward(*args, grad, norms, target, weight, one_sided),
                ops.grad_penalty_backward(*args, grad, norms, target, weight, one_sided),
                ops.grad_penalty_backward(*args64, grad64, norms64, target, weight, one_sided),
                what=f"backward {what} {[a is not None for a in args]}",
            )


def test_triton_layouts_and_empty_batch():
    kernels = _triton()
    cl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    alpha = torch.rand(2)
    out = kernels.interpolate(cl, torch.randn(2, 3, 4, 5), alpha)
    assert out.is_contiguous(memory_format=torch.channels_last)
    penalty, norms, _ = kernels.grad_penalty(torch.zeros(0, 4), 1.0, 10.0, False)
    assert torch.isnan(penalty) and norms.shape == (0,)
    penalty, _, _ = kernels.grad_penalty(torch.zeros(3, 0), 1.0, 10.0, False)
    torch.testing.assert_close(penalty, ops.grad_penalty(torch.zeros(3, 0), 1.0, 10.0, False, False)[0])


# --- hardening (issue 12): regressions -------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{}, {"one_sided": True}, {"target": 1e30}])
def test_penalty_overflow_gives_inf(kwargs):
    # A diverging critic: eager returns inf; fastgen raised "value cannot be converted".
    g = torch.full((2, 4), 5e18)
    out = F.grad_norm_penalty(g, **kwargs) if "target" not in kwargs else F.grad_norm_penalty(g * 0, **kwargs)
    ref = R.grad_norm_penalty(g, **kwargs) if "target" not in kwargs else R.grad_norm_penalty(g * 0, **kwargs)
    assert torch.isinf(ref) and torch.isinf(out)


def test_r1_penalty_overflow_gives_inf():
    out = F.r1_penalty(torch.full((2, 4), 5e18), gamma=10.0)
    assert torch.isinf(out)


def test_one_sided_penalty_propagates_nan():
    g = torch.ones(2, 3)
    g[0, 0] = float("nan")
    g.requires_grad_(True)
    out = F.grad_norm_penalty(g, one_sided=True)
    assert torch.isnan(out)
    out.backward()
    assert torch.isnan(g.grad[0]).all() and torch.isfinite(g.grad[1]).all()
