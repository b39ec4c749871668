"""fastgen.functional.reparameterize_kl / reparameterize / kl_normal and their ops."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fastgen
from fastgen import functional as F
from fastgen.ops.reparam_kl import regenerate_noise
from fastgen.reference import reparam_kl as R
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
REDUCTIONS = ("none", "mean", "sum")
# Odd shapes: a single column, rows that are not whole vectors or noise blocks, >2-D, 1-D.
SHAPES = [(5, 7), (3, 1), (1, 33), (4, 3, 5, 7), (7,), (2, 70)]
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]


def _inputs(shape, dtype=torch.float64, scale=1.0):
    mu = torch.randn(shape, dtype=torch.float64) * scale
    logvar = torch.randn(shape, dtype=torch.float64) * scale
    eps = torch.randn(shape, dtype=torch.float64)
    return mu.to(dtype), logvar.to(dtype), eps.to(dtype)


def _grads(fn, mu, logvar, eps, grad_z, grad_kl, reduction):
    mu = mu.detach().requires_grad_()
    logvar = logvar.detach().requires_grad_()
    z, kl = fn(mu, logvar, eps, reduction=reduction)
    gmu, glv = torch.autograd.grad((z, kl), (mu, logvar), (grad_z, grad_kl))
    return z.detach(), kl.detach(), gmu, glv


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_forward_and_gradients_match_reference(shape, dtype, reduction):
    mu, logvar, eps = _inputs(shape, dtype)
    batch = shape[0]
    grad_z = torch.randn(shape, dtype=torch.float64).to(dtype)
    grad_kl = (torch.randn(batch) if reduction == "none" else torch.randn(())).double().to(dtype)
    fast = _grads(F.reparameterize_kl, mu, logvar, eps, grad_z, grad_kl, reduction)
    eager = _grads(R.reparameterize_kl, mu, logvar, eps, grad_z, grad_kl, reduction)
    ref = _grads(
        R.reparameterize_kl, mu.double(), logvar.double(), eps.double(), grad_z.double(), grad_kl.double(), reduction
    )
    for name, f, e, r in zip(("z", "kl", "grad_mu", "grad_logvar"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {dtype} {shape} {reduction}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_kl_normal_and_reparameterize_match_reference(reduction):
    mu, logvar, eps = _inputs((6, 9), torch.float32)
    ref_kl = R.kl_normal(mu.double(), logvar.double(), reduction=reduction)
    assert_parity(
        F.kl_normal(mu, logvar, reduction=reduction),
        R.kl_normal(mu, logvar, reduction=reduction),
        ref_kl,
        what="kl_normal",
    )
    ref_z = R.reparameterize(mu.double(), logvar.double(), eps.double())
    assert_parity(F.reparameterize(mu, logvar, eps), R.reparameterize(mu, logvar, eps), ref_z, what="reparameterize")


def test_float64_is_exact_to_rounding():
    mu, logvar, eps = _inputs((17, 45))
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    rz, rkl = R.reparameterize_kl(mu, logvar, eps, reduction="none")
    torch.testing.assert_close(z, rz, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(kl, rkl, rtol=1e-13, atol=1e-13)


def test_large_values_overflow_like_eager():
    # exp(0.5 * logvar) overflows float32 past logvar ~ 177: both give inf, neither NaN.
    mu = torch.zeros(2, 3)
    logvar = torch.tensor([[0.0, 170.0, 178.0], [-200.0, 1.0, 2.0]])
    eps = torch.ones(2, 3)
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    rz, rkl = R.reparameterize_kl(mu, logvar, eps, reduction="none")
    torch.testing.assert_close(z, rz, equal_nan=True)
    torch.testing.assert_close(kl, rkl, equal_nan=True)


def test_nan_propagates():
    mu, logvar, eps = _inputs((2, 5), torch.float32)
    mu[0, 3] = float("nan")
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    assert torch.isnan(z[0, 3]) and torch.isnan(kl[0])
    assert not torch.isnan(z[1]).any() and not torch.isnan(kl[1])


def test_rows_longer_than_one_chunk():
    # csrc/common/rows.h splits rows into 16384-element chunks summed in a fixed order.
    mu, logvar, eps = _inputs((2, 40_003), torch.float32, scale=0.5)
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    ref_z, ref_kl = R.reparameterize_kl(mu.double(), logvar.double(), eps.double(), reduction="none")
    eager_z, eager_kl = R.reparameterize_kl(mu, logvar, eps, reduction="none")
    assert_parity(z, eager_z, ref_z, what="z")
    assert_parity(kl, eager_kl, ref_kl, what="kl")


def test_result_does_not_depend_on_thread_count():
    mu, logvar, _ = _inputs((64, 50_000), torch.float32)
    seed = torch.tensor(7)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.reparam_kl(mu, logvar, None, seed, "sum")
        torch.set_num_threads(2)
        two = ops.reparam_kl(mu, logvar, None, seed, "sum")
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "transposed" and t.dim() >= 3:
        return t.transpose(1, 2).contiguous().transpose(1, 2)  # same values, other strides
    if layout == "sliced":
        return torch.cat([t, t], dim=-1)[..., ::2]  # every other element of a wider tensor
    return t


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(0, 5),
    features=st.lists(st.integers(1, 9), min_size=0, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    layouts=st.tuples(*[st.sampled_from(["contiguous", "transposed", "sliced"])] * 3),
    reduction=st.sampled_from(REDUCTIONS),
    in_kernel_noise=st.booleans(),
)
def test_random_shapes_dtypes_and_layouts(batch, features, dtype, layouts, reduction, in_kernel_noise):
    shape = (batch, *features)
    mu, logvar, eps = (_layout(t, lay) for t, lay in zip(_inputs(shape, dtype), layouts))
    seed = torch.tensor(1234)
    if in_kernel_noise:
        z, kl = ops.reparam_kl(mu, logvar, None, seed, reduction)
        eps = regenerate_noise(mu, seed).to(dtype)
    else:
        z, kl = F.reparameterize_kl(mu, logvar, eps, reduction=reduction)
    ref_z, ref_kl = R.reparameterize_kl(mu.double(), logvar.double(), eps.double(), reduction=reduction)
    eager_z, eager_kl = R.reparameterize_kl(mu, logvar, eps, reduction=reduction)
    assert_parity(z, eager_z, ref_z, what="z")
    assert_parity(kl, eager_kl, ref_kl, what="kl")


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck_eps_given(reduction):
    mu, logvar, eps = (t.requires_grad_() for t in _inputs((3, 5)))
    fn = lambda m, lv, e: F.reparameterize_kl(m, lv, e, reduction=reduction)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (mu, logvar, eps))
    assert torch.autograd.gradgradcheck(fn, (mu, logvar, eps))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_and_gradgradcheck_in_kernel_noise(reduction):
    mu, logvar, _ = (t.requires_grad_() for t in _inputs((3, 70)))
    fn = lambda m, lv: F.reparameterize_kl(  # noqa: E731
        m, lv, reduction=reduction, generator=torch.Generator().manual_seed(11)
    )
    assert torch.autograd.gradcheck(fn, (mu, logvar))
    assert torch.autograd.gradgradcheck(fn, (mu, logvar))


def test_gradcheck_kl_normal_and_reparameterize():
    mu, logvar, _ = (t.requires_grad_() for t in _inputs((4, 6)))
    for reduction in REDUCTIONS:
        fn = lambda m, lv: F.kl_normal(m, lv, reduction=reduction)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (mu, logvar))
        assert torch.autograd.gradgradcheck(fn, (mu, logvar))
    fn = lambda m, lv: F.reparameterize(m, lv, generator=torch.Generator().manual_seed(3))  # noqa: E731
    assert torch.autograd.gradcheck(fn, (mu, logvar))
    assert torch.autograd.gradgradcheck(fn, (mu, logvar))


def test_third_order_gradient_matches_reference():
    # Double backward of the backward op is written in torch ops, so higher orders work too.
    mu, logvar, eps = (t.requires_grad_() for t in _inputs((2, 3)))

    def third(fn):
        z, kl = fn(mu, logvar, eps, reduction="sum")
        g = torch.autograd.grad((z * z).sum() + kl, logvar, create_graph=True)[0]
        g2 = torch.autograd.grad((g * g).sum(), logvar, create_graph=True)[0]
        return torch.autograd.grad(g2.sum(), (mu, logvar))

    for a, b in zip(third(F.reparameterize_kl), third(R.reparameterize_kl)):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- layouts


def test_non_contiguous_inputs():
    base = torch.randn(3, 8, 10)
    mu = base.transpose(1, 2)  # not batch-major dense
    logvar = torch.randn(3, 20, 16)[:, ::2, ::2]  # strided slice
    eps = torch.randn(3, 10, 8)
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    rz, rkl = R.reparameterize_kl(mu.double(), logvar.double(), eps.double(), reduction="none")
    ez, ekl = R.reparameterize_kl(mu, logvar, eps, reduction="none")
    assert_parity(z, ez, rz, what="z")
    assert_parity(kl, ekl, rkl, what="kl")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_keeps_layout_and_gradients(dtype):
    shape = (2, 5, 3, 7)
    mu, logvar, eps = (t.to(memory_format=torch.channels_last) for t in _inputs(shape, dtype))
    grad_z = torch.randn(shape).to(dtype)
    fast = _grads(F.reparameterize_kl, mu, logvar, eps, grad_z, torch.tensor(1.0, dtype=dtype), "mean")
    assert fast[0].is_contiguous(memory_format=torch.channels_last)
    assert fast[2].is_contiguous(memory_format=torch.channels_last)
    eager = _grads(R.reparameterize_kl, mu, logvar, eps, grad_z, torch.tensor(1.0, dtype=dtype), "mean")
    ref = _grads(
        R.reparameterize_kl,
        mu.double(),
        logvar.double(),
        eps.double(),
        grad_z.double(),
        torch.tensor(1.0, dtype=torch.float64),
        "mean",
    )
    for name, f, e, r in zip(("z", "kl", "grad_mu", "grad_logvar"), fast, eager, ref):
        assert_parity(f, e, r, what=name)


def test_mixed_layouts():
    shape = (2, 4, 3, 5)
    mu, logvar, eps = _inputs(shape, torch.float32)
    logvar_cl = logvar.to(memory_format=torch.channels_last)
    z, kl = F.reparameterize_kl(mu, logvar_cl, eps.transpose(2, 3).contiguous().transpose(2, 3))
    rz, rkl = R.reparameterize_kl(mu, logvar, eps)
    z64, kl64 = R.reparameterize_kl(mu.double(), logvar.double(), eps.double())
    assert_parity(z, rz, z64, what="z")
    assert_parity(kl, rkl, kl64, what="kl")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_size_batch(reduction):
    mu = torch.zeros(0, 5, requires_grad=True)
    logvar = torch.zeros(0, 5, requires_grad=True)
    z, kl = F.reparameterize_kl(mu, logvar, reduction=reduction)
    rz, rkl = R.reparameterize_kl(mu, logvar, torch.zeros(0, 5), reduction=reduction)
    assert z.shape == (0, 5) and kl.shape == rkl.shape
    torch.testing.assert_close(kl, rkl, equal_nan=True)  # mean of nothing is NaN, as in torch
    (z.sum() + kl.nan_to_num().sum()).backward()
    assert mu.grad.shape == (0, 5)


def test_zero_size_features():
    mu, logvar, eps = torch.zeros(3, 0), torch.zeros(3, 0), torch.zeros(3, 0)
    z, kl = F.reparameterize_kl(mu, logvar, eps, reduction="none")
    assert z.shape == (3, 0) and torch.equal(kl, torch.zeros(3))


# --------------------------------------------------------------------------- in-kernel noise


def test_noise_is_standard_normal():
    mu = torch.zeros(64, 4099)  # rows that end mid noise block
    z = F.reparameterize(mu, torch.zeros_like(mu))
    flat = z.flatten().double()
    assert abs(flat.mean().item()) < 4 / flat.numel() ** 0.5
    assert abs(flat.var().item() - 1) < 0.02
    assert stats.kstest(flat.numpy(), "norm").pvalue > 1e-3
    # Each Philox component (the 16-element runs of a 64-element block) is normal on its own.
    blocks = z[:, :4096].reshape(64, 64, 4, 16)
    for k in range(4):
        assert stats.kstest(blocks[:, :, k].flatten().numpy(), "norm").pvalue > 1e-3
    # Rows draw from different counters: neighbouring rows are uncorrelated.
    corr = torch.corrcoef(z[:2])[0, 1].item()
    assert abs(corr) < 0.06


def test_noise_is_deterministic_under_manual_seed_and_fresh_otherwise():
    mu, logvar, _ = _inputs((4, 100), torch.float32)
    torch.manual_seed(123)
    a = F.reparameterize(mu, logvar)
    b = F.reparameterize(mu, logvar)
    torch.manual_seed(123)
    c = F.reparameterize(mu, logvar)
    assert torch.equal(a, c)
    assert not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(F.reparameterize(mu, logvar, generator=g1), F.reparameterize(mu, logvar, generator=g2))


def test_backward_regenerates_the_forward_noise():
    # The gradient w.r.t. logvar uses eps; with in-kernel noise it must be the forward's eps.
    mu, logvar, _ = (t.requires_grad_() for t in _inputs((5, 130), torch.float32))
    seed = torch.tensor(99)
    z, kl = ops.reparam_kl(mu, logvar, None, seed, "mean")
    eps = regenerate_noise(mu, seed)
    mu64, logvar64 = (t.detach().double().requires_grad_() for t in (mu, logvar))
    assert_parity(
        z.detach(),
        R.reparameterize(mu, logvar, eps).detach(),
        R.reparameterize(mu64, logvar64, eps.double()).detach(),
        what="z",
    )
    grad_z = torch.randn_like(z)
    fast = torch.autograd.grad((z, kl), (mu, logvar), (grad_z, torch.tensor(1.0)))
    rz, rkl = R.reparameterize_kl(mu, logvar, eps)
    ref = torch.autograd.grad((rz, rkl), (mu, logvar), (grad_z, torch.tensor(1.0)))
    rz, rkl = R.reparameterize_kl(mu64, logvar64, eps.double())
    ref64 = torch.autograd.grad((rz, rkl), (mu64, logvar64), (grad_z.double(), torch.tensor(1.0, dtype=torch.float64)))
    assert_parity_tree(fast, ref, ref64, what="grads")


def test_eps_gradient_when_eps_requires_grad():
    mu, logvar, eps = (t.requires_grad_() for t in _inputs((3, 4), torch.float32))
    z, kl = F.reparameterize_kl(mu, logvar, eps)
    g = torch.autograd.grad(z.sum() + kl, eps)[0]
    assert_parity(g, torch.exp(0.5 * logvar.detach()), torch.exp(0.5 * logvar.detach().double()), what="grad_eps")


# --------------------------------------------------------------------------- torch.library


def test_opcheck():
    mu, logvar, eps = (t.requires_grad_() for t in _inputs((3, 70), torch.float32))
    seed = torch.tensor(3)
    for reduction in REDUCTIONS:
        torch.library.opcheck(ops.reparam_kl, (mu, logvar, eps, None, reduction))
        torch.library.opcheck(ops.reparam_kl, (mu, logvar, None, seed, reduction))
        torch.library.opcheck(ops.kl_normal, (mu, logvar, reduction))
    grad_z = torch.randn(3, 70)
    torch.library.opcheck(ops.reparam_kl_backward, (grad_z, torch.tensor(1.0), mu, logvar, eps, None, "mean", True))
    torch.library.opcheck(ops.reparam_kl_backward, (grad_z, torch.randn(3), mu, logvar, None, seed, "none", False))
    torch.library.opcheck(ops.reparam_kl_backward, (None, torch.tensor(2.0), mu, logvar, None, None, "sum", False))
    cl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    torch.library.opcheck(ops.reparam_kl, (cl, cl.clone(), None, seed, "mean"))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def step(mu, logvar, eps):
        z, kl = F.reparameterize_kl(mu, logvar, eps)
        z2 = F.reparameterize(mu, logvar)
        return (z * z).sum() + kl + F.kl_normal(mu, logvar, reduction="sum") + z2.mean()

    compiled = torch.compile(step, fullgraph=True)
    mu, logvar, eps = (t.requires_grad_() for t in _inputs((4, 33), torch.float32))
    torch.manual_seed(1)
    out = compiled(mu, logvar, eps)
    grads = torch.autograd.grad(out, (mu, logvar))
    torch.manual_seed(1)
    ref_out = step(mu, logvar, eps)
    ref_grads = torch.autograd.grad(ref_out, (mu, logvar))
    mu64, logvar64 = (t.detach().double().requires_grad_() for t in (mu, logvar))
    torch.manual_seed(1)
    out64 = step(mu64, logvar64, eps.double())
    grads64 = torch.autograd.grad(out64, (mu64, logvar64))
    assert_parity(out.detach(), ref_out.detach(), out64.detach(), what="compiled output")
    assert_parity_tree(grads, ref_grads, grads64, what="compiled grads")


def test_module():
    layer = fastgen.nn.Reparameterize(reduction="sum")
    mu, logvar, eps = _inputs((3, 4), torch.float32)
    z, kl = layer(mu, logvar, eps)
    rz, rkl = R.reparameterize_kl(mu, logvar, eps, reduction="sum")
    z64, kl64 = R.reparameterize_kl(mu.double(), logvar.double(), eps.double(), reduction="sum")
    assert_parity(z, rz, z64, what="z")
    assert_parity(kl, rkl, kl64, what="kl")
    assert "reduction='sum'" in repr(layer)
    assert layer.state_dict() == {}


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    mu = torch.randn(3, 4)
    _raises(r"logvar must have the shape of mu \(3, 4\), got \(3, 5\)", F.reparameterize_kl, mu, torch.randn(3, 5))
    _raises(
        r"logvar must have the dtype of mu \(torch.float32\), got torch.float64",
        F.reparameterize_kl,
        mu,
        torch.randn(3, 4, dtype=torch.float64),
    )
    _raises(r"eps must have the shape of mu", F.reparameterize_kl, mu, mu, torch.randn(4, 3))
    _raises(
        r"mu must be a floating-point tensor .* got torch.int64",
        F.reparameterize_kl,
        torch.ones(3, 4, dtype=torch.long),
        torch.ones(3, 4, dtype=torch.long),
    )
    _raises(r"mu must have a batch dimension", F.reparameterize_kl, torch.tensor(1.0), torch.tensor(1.0))
    _raises(r"reduction must be one of .* got 'avg'", F.reparameterize_kl, mu, mu, reduction="avg")
    _raises(r"reduction must be one of", F.kl_normal, mu, mu, reduction="batchmean")
    _raises(r"generator must be a torch.Generator", F.reparameterize, mu, mu, generator=3)
    _raises(r"logvar must be a torch.Tensor", F.kl_normal, mu, [1.0])
    _raises(r"reduction must be one of", fastgen.nn.Reparameterize, "avg")


def test_bad_inputs_to_the_ops_directly():
    mu = torch.randn(3, 4)
    _raises(
        r"fastgen.reparam_kl: logvar must have the shape of mu",
        ops.reparam_kl,
        mu,
        torch.randn(4, 3),
        None,
        torch.tensor(1),
        "mean",
    )
    _raises(r"fastgen.reparam_kl: either eps or seed must be given", ops.reparam_kl, mu, mu, None, None, "mean")
    _raises(
        r"fastgen.reparam_kl: seed must be a one-element int64 tensor",
        ops.reparam_kl,
        mu,
        mu,
        None,
        torch.tensor([1.0]),
        "mean",
    )
    _raises(
        r"fastgen.reparam_kl: reduction must be 'none', 'mean' or 'sum', got 'x'", ops.reparam_kl, mu, mu, mu, None, "x"
    )
    _raises(
        r"fastgen.reparam_kl_backward: grad_kl must have shape \(3,\)",
        ops.reparam_kl_backward,
        None,
        torch.randn(2),
        mu,
        mu,
        None,
        None,
        "none",
        False,
    )
    _raises(
        r"fastgen.reparam_kl_backward: eps_grad=True needs eps",
        ops.reparam_kl_backward,
        mu,
        None,
        mu,
        mu,
        None,
        torch.tensor(1),
        "none",
        True,
    )
    # The fake impls make the same checks (what torch.compile and meta tensors see).
    meta = torch.empty(3, 4, device="meta")
    _raises(
        r"fastgen.reparam_kl: logvar must have the shape of mu",
        ops.reparam_kl,
        meta,
        torch.empty(4, 3, device="meta"),
        None,
        torch.tensor(1, device="meta"),
        "mean",
    )


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("reparam_kl")  # the ops' CUDA functions: checks + Triton launchers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 70), (2, 3, 5, 7), (1, 130)])
def test_triton_forward_and_backward_match_cpu(dtype, shape):
    kernels = _triton()
    mu, logvar, eps = _inputs(shape, dtype)
    seed = torch.tensor(987654321123)
    grad_z = torch.randn(shape).to(dtype)
    mu64, logvar64, eps64, grad_z64 = (t.double() for t in (mu, logvar, eps, grad_z))  # the CPU kernel's float64 run
    for reduction, grad_kl in (("none", torch.randn(shape[0]).to(dtype)), ("mean", torch.tensor(0.5, dtype=dtype))):
        for e, e64, s in ((eps, eps64, None), (None, None, seed)):
            what = f"{dtype} {shape} {reduction} seed={s is not None}"
            got = kernels.reparam_kl(mu, logvar, e, s, reduction)
            want = ops.reparam_kl(mu, logvar, e, s, reduction)
            for a, b in zip(got, want):
                assert a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()
            assert_kernels_agree(got, want, ops.reparam_kl(mu64, logvar64, e64, s, reduction), what=what)
            got = kernels.reparam_kl_backward(grad_z, grad_kl, mu, logvar, e, s, reduction, e is not None)
            want = ops.reparam_kl_backward(grad_z, grad_kl, mu, logvar, e, s, reduction, e is not None)
            ref = ops.reparam_kl_backward(grad_z64, grad_kl.double(), mu64, logvar64, e64, s, reduction, e is not None)
            assert_kernels_agree(got, want, ref, what=f"backward {what}")
    assert_kernels_agree(
        kernels.kl_normal(mu, logvar, "sum"),
        ops.kl_normal(mu, logvar, "sum"),
        ops.kl_normal(mu64, logvar64, "sum"),
        what=f"kl_normal {dtype} {shape}",
    )


def test_triton_noise_equals_cpu_noise():
    # Same seed, same Philox convention: the CUDA kernels draw the CPU kernels' noise.
    kernels = _triton()
    zeros = torch.zeros(3, 200)
    seed = torch.tensor(2**40 + 12345)
    triton_noise = kernels.reparam_kl(zeros, zeros, None, seed, "none")[0]
    cpu_noise = ops.reparam_kl(zeros, zeros, None, seed, "none")[0]
    cpu_noise64 = ops.reparam_kl(zeros.double(), zeros.double(), None, seed, "none")[0]
    assert_parity(triton_noise, cpu_noise, cpu_noise64, what="noise")
    assert triton_noise.std() > 0.5


def test_triton_layouts_and_empty_batch():
    kernels = _triton()
    cl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    z, _ = kernels.reparam_kl(cl, cl, cl, None, "mean")
    assert z.is_contiguous(memory_format=torch.channels_last)
    assert_parity(
        z,
        ops.reparam_kl(cl, cl, cl, None, "mean")[0],
        ops.reparam_kl(*[cl.double()] * 3, None, "mean")[0],
        what="channels_last z",
    )
    empty = torch.zeros(0, 4)
    z, kl = kernels.reparam_kl(empty, empty, None, torch.tensor(1), "mean")
    assert z.shape == (0, 4) and torch.isnan(kl)


# --- hardening (issue 12): regressions -------------------------------------------------------


def test_meta_seed_with_cpu_tensors_raises():
    # One meta argument routed the call to the fake impl, which returned uninitialised memory.
    with pytest.raises((ValueError, RuntimeError), match="fastgen.reparam_kl: seed"):
        torch.ops.fastgen.reparam_kl(torch.zeros(2, 3), torch.zeros(2, 3), None, torch.tensor(7, device="meta"), "none")


def test_meta_eps_with_cpu_tensors_raises():
    with pytest.raises((ValueError, RuntimeError), match="fastgen.reparam_kl: eps"):
        torch.ops.fastgen.reparam_kl(
            torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3, device="meta"), None, "none"
        )


@pytest.mark.slow
def test_more_than_2_31_elements_index_in_64_bit():
    # One row of 2^31 + 64 bfloat16 elements (mu and logvar 4.3 GB each): the elements past 2^31
    # must be read where they are. With logvar = 0, kl = 0.5 * sum(mu^2).
    n = 2**31 + 64
    mu = torch.zeros(1, n, dtype=torch.bfloat16)
    logvar = torch.zeros(1, n, dtype=torch.bfloat16)
    mu[0, 2**31 + 5] = 3.0
    mu[0, n - 1] = 2.0
    mu[0, 7] = 1.0
    kl = torch.ops.fastgen.kl_normal(mu, logvar, "none")
    assert kl.shape == (1,)
    assert kl.item() == 0.5 * (9.0 + 4.0 + 1.0)


def test_backward_without_kl_gradient_keeps_infinite_mu_finite():
    # No gradient from kl: its terms are absent, not 0 * mu (NaN for an infinite mu), as in eager,
    # whose grad_mu is grad_z alone.
    mu = torch.tensor([[float("inf"), 1.0]])
    logvar = torch.tensor([[0.0, float("inf")]])
    eps = torch.ones(1, 2)
    grad_mu, grad_logvar, _ = torch.ops.fastgen.reparam_kl_backward(
        torch.ones(1, 2), None, mu, logvar, eps, None, "none", False
    )
    assert torch.equal(grad_mu, torch.ones(1, 2))
    assert grad_logvar[0, 0] == 0.5 and grad_logvar[0, 1] == float("inf")


def test_eps_gradient_without_grad_z_is_zero_not_uninitialised():
    # Called directly (the autograd never asks for it): grad_eps = grad_z * std with no grad_z is 0.
    mu, logvar, eps = torch.randn(64, 33), torch.randn(64, 33), torch.randn(64, 33)
    for _ in range(3):  # fresh allocations would hold whatever the allocator had there
        garbage = torch.full((64, 33), 7.0)
        del garbage
        _, _, grad_eps = torch.ops.fastgen.reparam_kl_backward(
            None, torch.tensor(1.0), mu, logvar, eps, None, "mean", True
        )
        assert torch.equal(grad_eps, torch.zeros_like(mu))
