"""fastgen.functional.affine_coupling (RealNVP), its ops, nn.AffineCoupling and the RealNVP
helpers (squeeze2d, dequantize + logit, bits_per_dim)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgen
from fastgen import functional as F
from fastgen.reference import coupling as R
from tests._models import gradient_scale
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
ALL = [True, True, True, True]
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]
# (mask, x shape): odd sizes, rows that are not whole vectors, 2-D and 4-D, a single column.
SHAPES = [
    ("channel", (5, 6)),
    ("channel", (3, 2)),
    ("channel", (3, 4, 5, 7)),
    ("channel", (2, 6, 3)),
    ("checkerboard", (2, 3, 5, 7)),
    ("checkerboard", (3, 2, 4, 33)),
    ("checkerboard", (2, 1, 1, 3)),
]


def _s_shape(mask, shape):
    return (shape[0], shape[1] // 2, *shape[2:]) if mask == "channel" else tuple(shape)


def _scale_shape(s_shape):
    return (s_shape[1],) + (1,) * (len(s_shape) - 2)  # per channel, as in RealNVP


def _inputs(mask, shape, dtype=torch.float64, *, scale=False, s_scale=0.5):
    ss = _s_shape(mask, shape)
    x = torch.randn(shape, dtype=torch.float64)
    s = torch.randn(ss, dtype=torch.float64) * s_scale
    t = torch.randn(ss, dtype=torch.float64)
    sc = torch.randn(_scale_shape(ss), dtype=torch.float64) if scale else None
    return tuple(u.to(dtype) if u is not None else None for u in (x, s, t, sc))


def _run(fn, x, s, t, sc, gy, gl, **kw):
    leaves = [u.detach().requires_grad_() for u in (x, s, t)]
    if sc is not None:
        leaves.append(sc.detach().requires_grad_())
    y, logdet = fn(*leaves[:3], scale=leaves[3] if sc is not None else None, **kw)
    grads = torch.autograd.grad((y, logdet), leaves, (gy, gl))
    return (y.detach(), logdet.detach(), *grads)


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("mask,shape", SHAPES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("scale", [False, True])
def test_forward_and_gradients_match_reference(mask, shape, dtype, inverse, scale):
    parity = (shape[0] + len(shape)) % 2  # both parities over the shapes
    x, s, t, sc = _inputs(mask, shape, dtype, scale=scale)
    gy = torch.randn(shape, dtype=torch.float64).to(dtype)
    gl = torch.randn(shape[0], dtype=torch.float32)
    kw = dict(mask=mask, mask_parity=parity, inverse=inverse)
    fast = _run(F.affine_coupling, x, s, t, sc, gy, gl, **kw)
    eager = _run(R.affine_coupling, x, s, t, sc, gy, gl, **kw)
    ref = _run(
        R.affine_coupling,
        *(u.double() if u is not None else None for u in (x, s, t, sc)),
        gy.double(),
        gl.double(),
        **kw,
    )
    names = ("y", "logdet", "grad_x", "grad_s", "grad_t", "grad_scale")
    for name, f, e, r in zip(names, fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {mask} {shape} {dtype} inverse={inverse} scale={scale}")


def test_logdet_is_float32_for_half_types_and_float64_for_double():
    for dtype, want in (
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ):
        x, s, t, _ = _inputs("channel", (2, 4), dtype)
        y, logdet = F.affine_coupling(x, s, t)
        assert y.dtype == dtype and logdet.dtype == want


def test_float64_is_exact_to_rounding():
    for mask, shape in (("channel", (7, 10, 3)), ("checkerboard", (3, 4, 6, 5))):
        for inverse in (False, True):
            x, s, t, sc = _inputs(mask, shape, scale=True)
            got = F.affine_coupling(x, s, t, mask=mask, scale=sc, inverse=inverse)
            want = R.affine_coupling(x, s, t, mask=mask, scale=sc, inverse=inverse)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mask,shape", [("channel", (3, 8)), ("checkerboard", (2, 3, 4, 5))])
def test_inverse_undoes_forward(mask, shape):
    x, s, t, sc = _inputs(mask, shape, torch.float32, scale=True)
    for parity in (0, 1):
        y, logdet = F.affine_coupling(x, s, t, mask=mask, mask_parity=parity, scale=sc)
        back, inv_logdet = F.affine_coupling(y, s, t, mask=mask, mask_parity=parity, scale=sc, inverse=True)
        # The same round trip in eager float32; x itself and float64 logdet are the reference.
        ey, elogdet = R.affine_coupling(x, s, t, mask=mask, mask_parity=parity, scale=sc)
        eback, einv_logdet = R.affine_coupling(ey, s, t, mask=mask, mask_parity=parity, scale=sc, inverse=True)
        logdet64 = R.affine_coupling(
            *(u.double() for u in (x, s, t)), mask=mask, mask_parity=parity, scale=sc.double()
        )[1]
        assert_parity(back, eback, x.double(), what=f"round trip {parity}")
        assert_parity(inv_logdet, einv_logdet, -logdet64, what=f"inverse logdet {parity}")


def test_logdet_is_the_log_determinant_of_the_jacobian():
    # The definition, checked by brute force: log |det d y / d x| of the whole map.
    for mask, shape in (("channel", (1, 6)), ("checkerboard", (1, 2, 3, 3))):
        _, s, t, sc = _inputs(mask, shape, scale=True)
        x = torch.randn(shape, dtype=torch.float64)
        for inverse in (False, True):
            fn = lambda u: F.affine_coupling(u, s, t, mask=mask, scale=sc, inverse=inverse)[0]  # noqa: E731
            jac = torch.autograd.functional.jacobian(fn, x).reshape(x.numel(), x.numel())
            logdet = F.affine_coupling(x, s, t, mask=mask, scale=sc, inverse=inverse)[1]
            torch.testing.assert_close(torch.linalg.slogdet(jac)[1], logdet[0])


def test_large_s_overflows_like_eager_and_nan_propagates():
    x = torch.ones(2, 4)
    s = torch.tensor([[0.0, 100.0], [-200.0, 1.0]])
    t = torch.zeros(2, 2)
    got = F.affine_coupling(x, s, t)
    want = R.affine_coupling(x, s, t)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, equal_nan=True)
    x[1, 3] = float("nan")
    y, logdet = F.affine_coupling(x, s, t)
    assert torch.isnan(y[1, 3]) and not torch.isnan(y[0]).any() and not torch.isnan(logdet).any()
    s2 = s.clone()
    s2[0, 1] = float("nan")
    y, logdet = F.affine_coupling(torch.ones(2, 4), s2, t)
    assert torch.isnan(y[0, 3]) and torch.isnan(logdet[0]) and not torch.isnan(logdet[1])


def test_checkerboard_ignores_s_and_t_on_the_conditioning_elements():
    x, s, t, sc = _inputs("checkerboard", (2, 3, 4, 5), torch.float32, scale=True)
    cond = F.checkerboard_mask(4, 5, 1) > 0  # (h + w) % 2 == 0: conditioning for parity 0
    s_junk = torch.where(cond, torch.full_like(s, float("nan")), s)
    t_junk = torch.where(cond, torch.full_like(t, float("inf")), t)
    for inverse in (False, True):
        a = F.affine_coupling(x, s, t, mask="checkerboard", scale=sc, inverse=inverse)
        b = F.affine_coupling(x, s_junk, t_junk, mask="checkerboard", scale=sc, inverse=inverse)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v)
    s_junk.requires_grad_()
    y, logdet = F.affine_coupling(x, s_junk, t, mask="checkerboard")
    g = torch.autograd.grad((y * y).sum() + logdet.sum(), s_junk)[0]
    assert (g[cond.expand_as(g)] == 0).all() and not torch.isnan(g).any()


def test_mask_parity_picks_the_transformed_part():
    x = torch.zeros(1, 4)
    s = torch.zeros(1, 2)
    t = torch.ones(1, 2)
    assert F.affine_coupling(x, s, t, mask_parity=0)[0].tolist() == [[0, 0, 1, 1]]
    assert F.affine_coupling(x, s, t, mask_parity=1)[0].tolist() == [[1, 1, 0, 0]]
    x = torch.zeros(1, 1, 2, 2)
    t = torch.ones(1, 1, 2, 2)
    y0 = F.affine_coupling(x, t * 0, t, mask="checkerboard", mask_parity=0)[0]
    y1 = F.affine_coupling(x, t * 0, t, mask="checkerboard", mask_parity=1)[0]
    assert y0.flatten().tolist() == [0, 1, 1, 0] and y1.flatten().tolist() == [1, 0, 0, 1]
    assert torch.equal(F.checkerboard_mask(2, 2, 0).flatten(), y0.flatten())


@pytest.mark.parametrize(
    "scale_shape", [(), (1,), (3, 1, 1), (1, 3, 1, 1), (3, 4, 5), (4, 1, 1, 1), (4, 3, 4, 5), (5,)]
)
def test_scale_broadcasts_like_torch(scale_shape):
    x, s, t, _ = _inputs("channel", (4, 6, 4, 5), torch.float32)
    sc = torch.randn(scale_shape)
    gy, gl = torch.randn_like(x), torch.randn(4)
    fast = _run(F.affine_coupling, x, s, t, sc, gy, gl)
    eager = _run(R.affine_coupling, x, s, t, sc, gy, gl)
    ref = _run(R.affine_coupling, x.double(), s.double(), t.double(), sc.double(), gy.double(), gl.double())
    for name, f, e, r in zip(("y", "logdet", "gx", "gs", "gt", "gscale"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} scale {scale_shape}")


def test_result_does_not_depend_on_thread_count():
    x, s, t, sc = _inputs("checkerboard", (64, 4, 32, 32), torch.float32, scale=True)
    g, gl = torch.randn_like(x), torch.randn(64)
    before = torch.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append(
                ops.affine_coupling(x, s, t, sc, "checkerboard", 0, False)
                + ops.affine_coupling_backward(g, gl, x, s, sc, "checkerboard", 0, False, ALL)
            )
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*out):
        assert torch.equal(a, b)


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("mask,shape", [("channel", (2, 4, 3)), ("checkerboard", (2, 2, 3, 3))])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("scale", [False, True])
def test_gradcheck_and_gradgradcheck(mask, shape, inverse, scale):
    x, s, t, sc = _inputs(mask, shape, scale=scale)
    leaves = [u.requires_grad_() for u in (x, s, t, sc) if u is not None]
    for parity in (0, 1):

        def fn(*a):
            return F.affine_coupling(
                a[0], a[1], a[2], mask=mask, mask_parity=parity, inverse=inverse, scale=a[3] if scale else None
            )

        assert torch.autograd.gradcheck(fn, leaves)
        assert torch.autograd.gradgradcheck(fn, leaves)


def test_gradgradcheck_with_only_one_output_used():
    # y alone (grad_logdet is None) and logdet alone (grad_output is None) through both orders.
    x, s, t, sc = _inputs("checkerboard", (2, 2, 3, 2), scale=True)
    leaves = [u.requires_grad_() for u in (x, s, t, sc)]
    for inverse in (False, True):
        for pick in (0, 1):
            fn = lambda *a: F.affine_coupling(*a[:3], mask="checkerboard", scale=a[3], inverse=inverse)[pick]  # noqa
            assert torch.autograd.gradcheck(fn, leaves)
            assert torch.autograd.gradgradcheck(fn, leaves)


def test_third_order_gradient_matches_reference():
    x, s, t, sc = (u.requires_grad_() for u in _inputs("channel", (2, 4), scale=True))

    def third(fn):
        y, logdet = fn(x, s, t, scale=sc)
        g = torch.autograd.grad((y * y).sum() + logdet.sum(), s, create_graph=True)[0]
        g2 = torch.autograd.grad((g * g).sum(), (x, s), create_graph=True)
        return torch.autograd.grad(g2[0].sum() + g2[1].sum(), (x, s, t, sc))

    for a, b in zip(third(F.affine_coupling), third(R.affine_coupling)):
        torch.testing.assert_close(a, b)


def test_gradient_only_for_what_requires_grad():
    # x without grad (a flow's data): only s and t gradients; the backward skips grad_input.
    x, s, t, _ = _inputs("channel", (3, 4), torch.float32)
    s.requires_grad_()
    y, logdet = F.affine_coupling(x, s, t)
    (gs,) = torch.autograd.grad((y.sum() + logdet.sum()), (s,))
    ey, elogdet = R.affine_coupling(x, s, t)
    s64 = s.detach().double().requires_grad_()
    y64, logdet64 = R.affine_coupling(x.double(), s64, t.double())
    assert_parity(
        gs,
        torch.autograd.grad(ey.sum() + elogdet.sum(), s)[0],
        torch.autograd.grad(y64.sum() + logdet64.sum(), s64)[0],
        what="grad_s",
    )
    got = ops.affine_coupling_backward(
        torch.ones_like(x), None, x, s, None, "channel", 0, False, [False, True, False, False]
    )
    assert got[0].numel() == 0 and got[2].numel() == 0 and got[3].numel() == 0 and got[1].shape == s.shape


# --------------------------------------------------------------------------- layouts


def _check_same_as_reference(x, s, t, sc=None, **kw):
    gy = torch.randn(x.shape)
    gl = torch.randn(x.shape[0])
    fast = _run(F.affine_coupling, x, s, t, sc, gy, gl, **kw)
    ref = _run(R.affine_coupling, x, s, t, sc, gy, gl, **kw)
    up = lambda u: u.double() if u is not None else None  # noqa: E731
    ref64 = _run(R.affine_coupling, *map(up, (x, s, t, sc, gy, gl)), **kw)
    assert_parity_tree(fast, ref, ref64, what=f"{tuple(x.shape)} {kw}")
    return fast


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
def test_channels_last_keeps_layout(mask):
    x, s, t, sc = _inputs(mask, (2, 6, 3, 5), torch.float32, scale=True)
    cl = [u.to(memory_format=torch.channels_last) for u in (x, s, t)]
    for inverse in (False, True):
        y, logdet, gx, gs, gt, gsc = _check_same_as_reference(*cl, sc, mask=mask, inverse=inverse)
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert gx.is_contiguous(memory_format=torch.channels_last)
        assert gs.is_contiguous(memory_format=torch.channels_last)
    # mixed: channels_last x with contiguous s and t (copied into x's order inside)
    _check_same_as_reference(cl[0], s, t, sc, mask=mask)


def test_non_contiguous_inputs():
    base = torch.randn(3, 8, 10)
    x = base.transpose(1, 2)  # (3, 10, 8), not row-dense in natural order
    s = torch.randn(3, 16, 8)[:, ::3][:, :5]  # strided slice
    t = torch.randn(3, 8, 5).transpose(1, 2)
    _check_same_as_reference(x, s, t, mask="channel")
    x4 = torch.randn(2, 3, 8, 10)[..., ::2]  # (2, 3, 8, 5) with a stride-2 innermost dim
    _check_same_as_reference(x4, torch.randn(2, 3, 8, 5), torch.randn(2, 3, 8, 5), mask="checkerboard")


def test_conditioner_output_halves_are_read_in_place():
    # s, t = st.chunk(2, 1): rows are dense with a batch stride of two rows; no copy, same result.
    st = torch.randn(4, 6, 5, 7)
    s, t = st.chunk(2, dim=1)
    x = torch.randn(4, 6, 5, 7)
    _check_same_as_reference(x, s, t, mask="channel")
    st = torch.randn(4, 12, 5, 7)
    _check_same_as_reference(x, *st.chunk(2, dim=1), mask="checkerboard")
    # x itself a factored-out half (rows dense, batch stride of two rows)
    _check_same_as_reference(torch.randn(4, 12, 5, 7)[:, :6], s, t, mask="channel")
    # s broadcast over the batch (batch stride 0)
    _check_same_as_reference(x, torch.randn(1, 3, 5, 7).expand(4, 3, 5, 7), t, mask="channel")


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
def test_zero_size_batch(mask):
    x = torch.zeros(0, 4, 3, 3, requires_grad=True)
    ss = _s_shape(mask, x.shape)
    s = torch.zeros(ss, requires_grad=True)
    t = torch.zeros(ss, requires_grad=True)
    sc = torch.zeros(ss[1], 1, 1, requires_grad=True)
    y, logdet = F.affine_coupling(x, s, t, mask=mask, scale=sc)
    assert y.shape == x.shape and logdet.shape == (0,)
    (y.sum() + logdet.sum()).backward()
    assert x.grad.shape == x.shape and s.grad.shape == ss and torch.equal(sc.grad, torch.zeros_like(sc))


def test_zero_size_features():
    x, s, t = torch.zeros(3, 0), torch.zeros(3, 0), torch.zeros(3, 0)
    y, logdet = F.affine_coupling(x, s, t)
    assert y.shape == (3, 0) and torch.equal(logdet, torch.zeros(3))


def _layout(t, kind):
    if kind == "channels_last" and t.dim() == 4:
        return t.to(memory_format=torch.channels_last)
    if kind == "sliced":
        return torch.cat([t, t], dim=-1)[..., ::2]
    if kind == "transposed" and t.dim() >= 3:
        return t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(0, 4),
    channels=st.integers(1, 4),
    spatial=st.lists(st.integers(1, 9), min_size=0, max_size=2),
    checker=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    layouts=st.tuples(*[st.sampled_from(["contiguous", "channels_last", "sliced", "transposed"])] * 3),
    parity=st.integers(0, 1),
    inverse=st.booleans(),
    scale=st.booleans(),
)
def test_random_shapes_dtypes_and_layouts(batch, channels, spatial, checker, dtype, layouts, parity, inverse, scale):
    if checker:
        mask, shape = "checkerboard", (batch, channels, *(spatial + [3, 4])[:2])
    else:
        mask, shape = "channel", (batch, 2 * channels, *spatial)
    x, s, t, sc = _inputs(mask, shape, dtype, scale=scale)
    x, s, t = (_layout(u, lay) for u, lay in zip((x, s, t), layouts))
    gy = torch.randn(shape).to(dtype)
    gl = torch.randn(batch)
    kw = dict(mask=mask, mask_parity=parity, inverse=inverse)
    fast = _run(F.affine_coupling, x, s, t, sc, gy, gl, **kw)
    eager = _run(R.affine_coupling, x, s, t, sc, gy, gl, **kw)
    ref = _run(
        R.affine_coupling,
        *(u.double() if u is not None else None for u in (x, s, t, sc)),
        gy.double(),
        gl.double(),
        **kw,
    )
    for f, e, r in zip(fast, eager, ref):
        assert_parity(f, e, r, what=f"{mask} {shape} {dtype} {layouts}")


# --------------------------------------------------------------------------- torch.library


def test_opcheck():
    for mask, shape in (("channel", (3, 4, 5)), ("checkerboard", (2, 3, 4, 5))):
        x, s, t, sc = _inputs(mask, shape, torch.float32, scale=True)
        for u in (x, s, t, sc):
            u.requires_grad_()
        for inverse in (False, True):
            torch.library.opcheck(ops.affine_coupling, (x, s, t, sc, mask, 1, inverse))
            torch.library.opcheck(ops.affine_coupling, (x, s, t, None, mask, 0, inverse))
            g, gl = torch.randn(shape), torch.randn(shape[0])
            torch.library.opcheck(ops.affine_coupling_backward, (g, gl, x, s, sc, mask, 0, inverse, ALL))
            torch.library.opcheck(
                ops.affine_coupling_backward, (None, gl, x, s, None, mask, 1, inverse, [False, True, True, False])
            )
            torch.library.opcheck(
                ops.affine_coupling_backward, (g, None, x, s, sc, mask, 0, inverse, [True, False, False, True])
            )
    cl = torch.randn(2, 4, 3, 5).to(memory_format=torch.channels_last)
    s = torch.randn(2, 2, 3, 5)
    torch.library.opcheck(ops.affine_coupling, (cl, s, s.clone(), None, "channel", 0, False))
    torch.library.opcheck(
        ops.affine_coupling_backward, (cl.clone(), torch.randn(2), cl, s, None, "channel", 0, True, ALL)
    )


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def step(x, s, t, sc, fn):
        y, ld = fn(x, s, t, mask="checkerboard", scale=sc)
        z, ld2 = fn(y, s * 0.5, t, mask="checkerboard", mask_parity=1, scale=sc, inverse=True)
        u, ld3 = fn(z.flatten(2), s.flatten(2)[:, :1], t.flatten(2)[:, :1], mask="channel")
        return (u * u).sum() + (ld + ld2 + ld3).sum()

    x, s, t, sc = (u.requires_grad_() for u in _inputs("checkerboard", (2, 2, 4, 5), torch.float32, scale=True))
    compiled = torch.compile(lambda *a: step(*a, F.affine_coupling), fullgraph=True)
    out = compiled(x, s, t, sc)
    grads = torch.autograd.grad(out, (x, s, t, sc))
    ref = step(x, s, t, sc, R.affine_coupling)
    ref_grads = torch.autograd.grad(ref, (x, s, t, sc))
    inputs64 = [u.detach().double().requires_grad_() for u in (x, s, t, sc)]
    ref64 = step(*inputs64, R.affine_coupling)
    assert_parity(out.detach(), ref.detach(), ref64.detach(), what="compiled output")
    assert_parity_tree(grads, ref_grads, torch.autograd.grad(ref64, inputs64), what="compiled grads")


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    x, s, t = torch.randn(3, 4), torch.randn(3, 2), torch.randn(3, 2)
    _raises(
        r"affine_coupling: s must have shape \(3, 2\) \(one half of x\), got \(3, 3\)",
        F.affine_coupling,
        x,
        torch.randn(3, 3),
        t,
    )
    _raises(r"t must have shape \(3, 2\)", F.affine_coupling, x, s, torch.randn(2, 2))
    _raises(
        r"x must have an even number of channels \(dim 1\) for mask='channel', got 5",
        F.affine_coupling,
        torch.randn(3, 5),
        s,
        t,
    )
    _raises(r"x must be \(B, C, ...\) or \(B, D\)", F.affine_coupling, torch.randn(4), s, t)
    _raises(
        r"x must be 4-D \(B, C, H, W\) for mask='checkerboard', got shape \(3, 4\)",
        F.affine_coupling,
        x,
        x,
        x,
        mask="checkerboard",
    )
    _raises(
        r"scale must broadcast to the shape of s \(3, 2\), got shape \(3,\)",
        F.affine_coupling,
        x,
        s,
        t,
        scale=torch.randn(3),
    )
    _raises(r"s must have the dtype of x \(torch.float32\), got torch.float64", F.affine_coupling, x, s.double(), t)
    _raises(r"scale must have the dtype of x", F.affine_coupling, x, s, t, scale=torch.randn(2).double())
    _raises(r"mask must be one of \('channel', 'checkerboard'\), got 'rows'", F.affine_coupling, x, s, t, mask="rows")
    _raises(r"mask_parity must be 0 or 1, got 2", F.affine_coupling, x, s, t, mask_parity=2)
    _raises(r"x must be a floating-point tensor", F.affine_coupling, x.long(), s, t)
    _raises(r"t must be a torch.Tensor", F.affine_coupling, x, s, [1.0])


def test_bad_inputs_to_the_ops_directly():
    x, s = torch.randn(3, 4), torch.randn(3, 2)
    _raises(
        r"fastgen.affine_coupling: s must have shape \[3, 2\]",
        ops.affine_coupling,
        x,
        torch.randn(3, 3),
        s,
        None,
        "channel",
        0,
        False,
    )
    _raises(
        r"fastgen.affine_coupling: x must have an even number of channels",
        ops.affine_coupling,
        torch.randn(3, 5),
        s,
        s,
        None,
        "channel",
        0,
        False,
    )
    _raises(r"fastgen.affine_coupling: x must be 4-D", ops.affine_coupling, x, x, x, None, "checkerboard", 0, False)
    _raises(
        r"fastgen.affine_coupling: scale must broadcast to the shape of s",
        ops.affine_coupling,
        x,
        s,
        s,
        torch.randn(3),
        "channel",
        0,
        False,
    )
    _raises(
        r"fastgen.affine_coupling: mask must be 'channel' or 'checkerboard', got 'x'",
        ops.affine_coupling,
        x,
        s,
        s,
        None,
        "x",
        0,
        False,
    )
    _raises(
        r"fastgen.affine_coupling: mask_parity must be 0 or 1, got 3",
        ops.affine_coupling,
        x,
        s,
        s,
        None,
        "channel",
        3,
        False,
    )
    _raises(
        r"fastgen.affine_coupling_backward: grad_logdet must have shape \(3,\)",
        ops.affine_coupling_backward,
        None,
        torch.randn(2),
        x,
        s,
        None,
        "channel",
        0,
        False,
        ALL,
    )
    _raises(
        r"fastgen.affine_coupling_backward: grad_output must have the shape of x",
        ops.affine_coupling_backward,
        s,
        None,
        x,
        s,
        None,
        "channel",
        0,
        False,
        ALL,
    )
    # The fake impls make the same checks (what torch.compile and meta tensors see).
    meta = torch.empty(3, 4, device="meta")
    _raises(
        r"fastgen.affine_coupling: s must have shape \(3, 2\) \(one half of x\), got \(3, 3\)",
        ops.affine_coupling,
        meta,
        torch.empty(3, 3, device="meta"),
        torch.empty(3, 2, device="meta"),
        None,
        "channel",
        0,
        False,
    )
    _raises(
        r"fastgen.affine_coupling: x must be 4-D", ops.affine_coupling, meta, meta, meta, None, "checkerboard", 0, False
    )
    _raises(
        r"fastgen.affine_coupling: scale must broadcast",
        ops.affine_coupling,
        meta,
        torch.empty(3, 2, device="meta"),
        torch.empty(3, 2, device="meta"),
        torch.empty(3, device="meta"),
        "channel",
        0,
        False,
    )
    y, logdet = ops.affine_coupling(
        meta, torch.empty(3, 2, device="meta"), torch.empty(3, 2, device="meta"), None, "channel", 0, False
    )
    assert y.shape == (3, 4) and logdet.shape == (3,) and logdet.dtype == torch.float32


# --------------------------------------------------------------------------- nn.AffineCoupling


class _Conv(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, 2 * cout, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
def test_module_matches_eager_twin_and_inverts(mask):
    cin = 2 if mask == "channel" else 4
    cout = 2 if mask == "channel" else 4
    torch.manual_seed(0)
    layer = fastgen.nn.AffineCoupling(_Conv(cin, cout), mask=mask, mask_parity=1, channels=4)
    twin = R.AffineCoupling(_Conv(cin, cout), mask=mask, mask_parity=1, channels=4)
    assert (
        layer.state_dict().keys()
        == twin.state_dict().keys()
        == {"scale", "conditioner.conv.weight", "conditioner.conv.bias"}
    )
    with torch.no_grad():
        layer.scale.normal_()
    twin.load_state_dict(layer.state_dict())
    twin64 = copy.deepcopy(twin).double()  # the reference: the eager twin in float64
    x = torch.randn(3, 4, 5, 6)
    y, logdet = layer(x)
    ey, elogdet = twin(x)
    y64, logdet64 = twin64(x.double())
    assert_parity(y.detach(), ey.detach(), y64.detach(), what="y")
    assert_parity(logdet.detach(), elogdet.detach(), logdet64.detach(), what="logdet")
    back, inv_logdet = layer.inverse(y)
    eback, einv_logdet = twin.inverse(ey)
    assert_parity(back.detach(), eback.detach(), x.double(), what="round trip")
    assert_parity(inv_logdet.detach(), einv_logdet.detach(), -logdet64.detach(), what="inverse logdet")
    (y.sum() + logdet.sum()).backward()
    (ey.sum() + elogdet.sum()).backward()
    (y64.sum() + logdet64.sum()).backward()
    scale = gradient_scale({name: p.grad for name, p in twin64.named_parameters()})
    for (name, p), q, r in zip(layer.named_parameters(), twin.parameters(), twin64.parameters()):
        assert_parity(p.grad, q.grad, r.grad, what=f"grad of {name}", scale=max(scale, 1.0))
    assert "mask='%s'" % mask in repr(layer)


def test_module_conditioner_may_return_a_pair_and_scale_is_optional():
    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 6)

        def forward(self, h):
            return self.lin(h)[:, :3], self.lin(h)[:, 3:]

    layer = fastgen.nn.AffineCoupling(Pair(), learn_scale=False)
    assert layer.scale is None and "scale" not in layer.state_dict()
    x = torch.randn(5, 6)
    y, logdet = layer(x)
    s, t = layer.conditioner(x[:, :3])
    s64, t64, x64 = s.double(), t.double(), x.double()
    assert_parity(
        y.detach(),
        torch.cat([x[:, :3], x[:, 3:] * s.exp() + t], 1).detach(),
        torch.cat([x64[:, :3], x64[:, 3:] * s64.exp() + t64], 1).detach(),
        what="y",
    )
    assert_parity(logdet.detach(), s.sum(1).detach(), s64.sum(1).detach(), what="logdet")


def test_module_bad_arguments():
    lin = torch.nn.Linear(1, 2)
    _raises(r"nn.AffineCoupling: channels \(the size of x's dim 1\) must be given", fastgen.nn.AffineCoupling, lin)
    _raises(r"mask must be 'channel' or 'checkerboard'", fastgen.nn.AffineCoupling, lin, "rows", channels=2)
    _raises(r"mask_parity must be 0 or 1", fastgen.nn.AffineCoupling, lin, "channel", 2, channels=2)
    _raises(r"channels must be a positive even int, got 3", fastgen.nn.AffineCoupling, lin, channels=3)


# --------------------------------------------------------------------------- RealNVP helpers


def test_squeeze2d_matches_reference_and_inverts():
    x = torch.randn(2, 3, 4, 6)
    sq = F.squeeze2d(x)
    torch.testing.assert_close(sq, R.squeeze2d(x))
    assert sq.shape == (2, 12, 2, 3)
    torch.testing.assert_close(F.unsqueeze2d(sq), x)
    torch.testing.assert_close(R.unsqueeze2d(R.squeeze2d(x)), x)
    _raises(r"squeeze2d: x must have H and W divisible by factor=2", F.squeeze2d, torch.randn(1, 1, 3, 4))
    _raises(r"unsqueeze2d: x must have channels divisible by factor\*\*2=4", F.unsqueeze2d, torch.randn(1, 6, 2, 2))
    _raises(r"squeeze2d: x must be 4-D", F.squeeze2d, torch.randn(2, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logit_transform_matches_reference_and_its_jacobian(dtype):
    x = torch.rand(3, 2, 4, 4, dtype=torch.float64).to(dtype)
    for inverse in (False, True):
        inp = x if not inverse else torch.randn(3, 2, 4, 4, dtype=dtype)
        got = F.logit_transform(inp, alpha=0.05, inverse=inverse)
        want = R.logit_transform(inp, alpha=0.05, inverse=inverse)
        if dtype == torch.float32:
            ref = R.logit_transform(inp.double(), alpha=0.05, inverse=inverse)
            assert_parity_tree(got, want, ref, what=f"logit inverse={inverse}")
        else:  # float64: the reference itself, to rounding
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
    y, logdet = F.logit_transform(x, alpha=0.05)
    torch.testing.assert_close(F.logit_transform(y, alpha=0.05, inverse=True)[0], x)
    one = x[:1].double()
    jac = torch.autograd.functional.jacobian(lambda u: F.logit_transform(u, alpha=0.05)[0], one)
    truth = torch.linalg.slogdet(jac.reshape(one.numel(), -1))[1]
    if dtype == torch.float32:
        assert_parity(logdet[:1], R.logit_transform(x, alpha=0.05)[1][:1], truth.reshape(1), what="logdet vs Jacobian")
    else:
        torch.testing.assert_close(truth, logdet[0], rtol=1e-10, atol=1e-10)
    _raises(r"alpha must be in \[0, 0.5\)", F.logit_transform, x, alpha=0.5)


def test_dequantize_and_bits_per_dim():
    x = torch.randint(0, 256, (4, 3, 2, 2)) / 255.0
    noise = torch.rand(4, 3, 2, 2)
    d = F.dequantize(x, noise)
    torch.testing.assert_close(d, R.dequantize(x, noise))
    assert (d >= 0).all() and (d < 1).all()
    torch.testing.assert_close(torch.floor(d * 256), torch.round(x * 255))  # stays in its bin
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(F.dequantize(x, generator=g1), F.dequantize(x, generator=g2))
    y, logdet = F.logit_preprocess(x, noise)
    want, want64 = R.preprocess(x, noise), R.preprocess(x.double(), noise.double())
    assert_parity(y, want[0], want64[0], what="preprocess y")
    assert_parity(logdet, want[1], want64[1], what="preprocess logdet")
    # A uniform density on [0, 1]^D is 8 bits per dimension of 256-level data.
    lp = torch.zeros(5)
    torch.testing.assert_close(F.bits_per_dim(lp, 12), torch.full((5,), 8.0))
    torch.testing.assert_close(F.bits_per_dim(torch.tensor([-12 * math.log(2)]), 12), torch.tensor([9.0]))
    _raises(r"noise must have the shape of x", F.dequantize, x, torch.rand(4))
    _raises(r"num_dims must be positive", F.bits_per_dim, lp, 0)


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("coupling")  # the ops' CUDA functions: checks + Triton launchers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "mask,shape", [("channel", (3, 10)), ("channel", (2, 4, 3, 5)), ("checkerboard", (2, 3, 4, 5))]
)
def test_triton_forward_and_backward_match_cpu(dtype, mask, shape):
    kernels = _triton()
    x, s, t, sc = _inputs(mask, shape, dtype, scale=True)
    g = torch.randn(shape).to(dtype)
    gl = torch.randn(shape[0])
    up = lambda u: u.double() if u is not None else None  # noqa: E731  (the CPU kernel's float64 run)
    for parity, inverse, scale in ((0, False, sc), (1, True, None), (1, False, None), (0, True, sc)):
        what = f"{dtype} {mask} {shape} parity={parity} inverse={inverse} scale={scale is not None}"
        got = kernels.affine_coupling(x, s, t, scale, mask, parity, inverse)
        want = ops.affine_coupling(x, s, t, scale, mask, parity, inverse)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()
        assert_kernels_agree(
            got, want, ops.affine_coupling(up(x), up(s), up(t), up(scale), mask, parity, inverse), what=what
        )
        for out_mask, grads in (
            (ALL, (g, gl)),
            ([True, True, False, True], (None, gl)),
            ([False, True, True, False], (g, None)),
        ):
            got = kernels.affine_coupling_backward(*grads, x, s, scale, mask, parity, inverse, out_mask)
            want = ops.affine_coupling_backward(*grads, x, s, scale, mask, parity, inverse, out_mask)
            ref = ops.affine_coupling_backward(
                *map(up, grads), up(x), up(s), up(scale), mask, parity, inverse, out_mask
            )
            for a, b in zip(got, want):
                assert a.shape == b.shape and a.stride() == b.stride()
            assert_kernels_agree(got, want, ref, what=f"backward {what} {out_mask}")


def test_triton_layouts_per_sample_scale_and_empty_batch():
    kernels = _triton()
    x, s, t, _ = _inputs("checkerboard", (2, 4, 3, 5), torch.float32)
    cl = [u.to(memory_format=torch.channels_last) for u in (x, s, t)]
    sc = torch.randn(2, 1, 3, 1)  # varies along the batch
    for mask in ("checkerboard", "channel"):
        ss = (slice(None), slice(0, 2)) if mask == "channel" else (slice(None),)
        args = (cl[0], cl[1][ss], cl[2][ss], sc, mask, 1, False)
        got, want = kernels.affine_coupling(*args), ops.affine_coupling(*args)
        up = lambda u: u.double() if isinstance(u, torch.Tensor) else u  # noqa: E731
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        assert_kernels_agree(got, want, ops.affine_coupling(*map(up, args)), what=mask)
        g, gl = torch.randn(x.shape), torch.randn(2)
        got = kernels.affine_coupling_backward(g, gl, cl[0], cl[1][ss], sc, mask, 1, True, ALL)
        want = ops.affine_coupling_backward(g, gl, cl[0], cl[1][ss], sc, mask, 1, True, ALL)
        ref = ops.affine_coupling_backward(*map(up, (g, gl, cl[0], cl[1][ss], sc)), mask, 1, True, ALL)
        for a, b in zip(got, want):
            assert a.stride() == b.stride()
        assert_kernels_agree(got, want, ref, what=f"backward {mask}")
    empty = torch.zeros(0, 4)
    y, logdet = kernels.affine_coupling(empty, empty[:, :2], empty[:, :2], None, "channel", 0, False)
    assert y.shape == (0, 4) and logdet.shape == (0,)
