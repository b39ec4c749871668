"""Progressive GAN pixel norm: fastgen.functional.pixel_norm, fastgen.nn.PixelNorm and the
fastgen::pixel_norm ops (C++ and Triton)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgen
from fastgen import functional as F
from fastgen.ops.pixel_norm import pixel_layout
from fastgen.reference import pixel_norm as R
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
# (N, C), 4x4 and odd spatial sizes, channel counts that are not whole vectors, 3-D and 5-D.
SHAPES = [(4, 512), (3, 7), (2, 16, 4, 4), (2, 5, 3, 7), (1, 33, 9, 10), (3, 20, 11), (2, 3, 2, 3, 4), (2, 1, 5, 5)]
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]


def _randn(shape, dtype=torch.float64, scale=1.0):
    return (torch.randn(shape, dtype=torch.float64) * scale).to(dtype)


def _grads(fn, x, g):
    x = x.detach().requires_grad_()
    y = fn(x)
    return y.detach(), torch.autograd.grad(y, x, g)[0]


def _check_parity(x, g, what, eps=1e-8):
    fast = _grads(lambda t: F.pixel_norm(t, eps), x, g)
    eager = _grads(lambda t: R.pixel_norm(t, eps), x, g)
    ref = _grads(lambda t: R.pixel_norm(t, eps), x.double(), g.double())
    for name, f, e, r in zip(("y", "grad_x"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {what}")
    return fast


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_forward_and_gradient_match_reference(shape, dtype):
    _check_parity(_randn(shape, dtype), _randn(shape, dtype), f"{dtype} {shape}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channels_last_is_walked_in_place_and_kept(dtype):
    x = _randn((2, 24, 5, 3), dtype).to(memory_format=torch.channels_last)
    g = _randn((2, 24, 5, 3), dtype).to(memory_format=torch.channels_last)
    y, gx = _check_parity(x, g, f"channels_last {dtype}")
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert gx.is_contiguous(memory_format=torch.channels_last)
    assert pixel_layout(x) is x


def test_non_contiguous_and_mixed_layouts():
    x = torch.randn(3, 6, 8, 5).transpose(2, 3)  # neither planar nor interleaved: copied
    assert not x.is_contiguous() and pixel_layout(x).is_contiguous()
    _check_parity(x, torch.randn(3, 6, 5, 8), "transposed")
    x = torch.randn(2, 8, 12, 6)[:, ::2, ::2]  # strided slice
    _check_parity(x, torch.randn(2, 4, 6, 6).to(memory_format=torch.channels_last), "sliced")
    x = torch.randn(5, 9).t()  # (9, 5) with the channels not innermost
    _check_parity(x, torch.randn(9, 5), "transposed 2-D")


def test_eps_and_zero_pixels():
    x = torch.zeros(2, 4, 3, 3)
    x[0, :, 1, 1] = 1e-3
    for eps in (1e-8, 0.5):
        assert_parity(F.pixel_norm(x, eps), R.pixel_norm(x, eps), R.pixel_norm(x.double(), eps), what=f"eps {eps}")
    # A zero pixel stays zero (rsqrt(eps) * 0) with a finite gradient.
    y, gx = _grads(F.pixel_norm, x, torch.ones_like(x))
    assert torch.isfinite(gx).all() and not y[1].any()


def test_nan_propagates_per_pixel():
    x = torch.randn(2, 5, 3, 3)
    x[0, 2, 1, 1] = float("nan")
    y = F.pixel_norm(x)
    assert torch.isnan(y[0, :, 1, 1]).all()
    assert torch.isnan(y).sum() == 5


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(0, 3),
    channels=st.integers(1, 40),
    spatial=st.lists(st.integers(1, 9), min_size=0, max_size=2),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    layout=st.sampled_from(["contiguous", "channels_last", "sliced"]),
)
def test_random_shapes_dtypes_and_layouts(batch, channels, spatial, dtype, layout):
    shape = (batch, channels, *spatial)
    x = _randn(shape, dtype)
    if layout == "channels_last":
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    elif layout == "sliced":
        x = torch.cat([x, x], dim=-1)[..., ::2]
    g = _randn(shape, dtype)
    y, gx = _check_parity(x, g, f"{shape} {dtype} {layout}")
    assert y.stride() == pixel_layout(x).stride() or x.numel() == 0


def test_zero_size():
    for shape in [(0, 4, 3, 3), (2, 0, 3), (2, 4, 0, 3)]:
        x = torch.zeros(shape, requires_grad=True)
        y = F.pixel_norm(x)
        assert y.shape == shape
        y.sum().backward()
        assert x.grad.shape == shape


def test_gradcheck_and_gradgradcheck():
    for shape, layout in [((2, 5, 3, 2), None), ((3, 4), None), ((2, 6, 3, 3), torch.channels_last)]:
        x = _randn(shape)
        if layout is not None:
            x = x.to(memory_format=layout)
        x.requires_grad_()
        assert torch.autograd.gradcheck(F.pixel_norm, (x,))
        assert torch.autograd.gradgradcheck(F.pixel_norm, (x,))
    x = _randn((2, 3, 2)).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda t: F.pixel_norm(t, 0.3), (x,))


def test_result_does_not_depend_on_thread_count():
    x = torch.randn(16, 64, 33, 33)
    g = torch.randn_like(x)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append((ops.pixel_norm(x, 1e-8), ops.pixel_norm_backward(g, x, 1e-8)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_module():
    layer = fastgen.nn.PixelNorm(eps=1e-6)
    x = torch.randn(2, 8, 4, 4)
    assert_parity(layer(x), R.PixelNorm(1e-6)(x), R.PixelNorm(1e-6)(x.double()), what="module")
    assert "eps=1e-06" in repr(layer) and layer.state_dict() == {}
    with pytest.raises(ValueError, match="fastgen.nn.PixelNorm: eps must be a number >= 0, got -1"):
        fastgen.nn.PixelNorm(-1)


def test_opcheck():
    for x in (
        torch.randn(2, 5, 3, 4),
        torch.randn(2, 5, 3, 4).to(memory_format=torch.channels_last),
        torch.randn(4, 7),
        torch.randn(2, 6, 4, 4)[:, ::2],
    ):
        x.requires_grad_()
        torch.library.opcheck(ops.pixel_norm, (x, 1e-8))
        torch.library.opcheck(ops.pixel_norm_backward, (torch.randn(x.shape), x.detach(), 1e-8))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def block(x, w):
        return F.pixel_norm(torch.nn.functional.leaky_relu(torch.nn.functional.conv2d(x, w, padding=1), 0.2))

    compiled = torch.compile(block, fullgraph=True)
    x, w = torch.randn(2, 3, 6, 6, requires_grad=True), torch.randn(8, 3, 3, 3, requires_grad=True)
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    out, ref, ref64 = compiled(x, w), block(x, w), block(x64, w64)
    assert_parity(out.detach(), ref.detach(), ref64.detach(), what="compiled output")
    grads = [
        torch.autograd.grad(y.square().sum(), inputs)
        for y, inputs in ((out, (x, w)), (ref, (x, w)), (ref64, (x64, w64)))
    ]
    assert_parity_tree(*grads, what="compiled grads")


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    _raises(
        r"fastgen.pixel_norm: x must have a batch and a channel dimension \(N, C, ...\), got 1-D",
        F.pixel_norm,
        torch.randn(4),
    )
    _raises(r"fastgen.pixel_norm: x must be a floating-point tensor", F.pixel_norm, torch.ones(2, 3, dtype=torch.long))
    _raises(r"fastgen.pixel_norm: eps must be a number >= 0, got -0.1", F.pixel_norm, torch.randn(2, 3), -0.1)
    _raises(r"fastgen.pixel_norm: x must be a torch.Tensor", F.pixel_norm, [1.0, 2.0])
    _raises(r"fastgen.pixel_norm: x must have a batch and a channel dimension", ops.pixel_norm, torch.randn(3), 1e-8)
    _raises(r"fastgen.pixel_norm: eps must be a finite number >= 0", ops.pixel_norm, torch.randn(2, 3), float("nan"))
    _raises(
        r"fastgen.pixel_norm_backward: grad must have the shape of x .2, 3., got .3, 2.",
        ops.pixel_norm_backward,
        torch.randn(3, 2),
        torch.randn(2, 3),
        1e-8,
    )
    _raises(
        r"fastgen.pixel_norm_backward: grad must have the dtype of x",
        ops.pixel_norm_backward,
        torch.randn(2, 3, dtype=torch.float64),
        torch.randn(2, 3),
        1e-8,
    )
    meta = torch.empty(2, 3, device="meta")
    _raises(
        r"fastgen.pixel_norm_backward: grad must have the shape of x",
        ops.pixel_norm_backward,
        torch.empty(3, 2, device="meta"),
        meta,
        1e-8,
    )
    _raises(
        r"fastgen.pixel_norm: x must have a batch and a channel dimension",
        ops.pixel_norm,
        torch.empty(3, device="meta"),
        1e-8,
    )


# --------------------------------------------------------------------------- Triton (interpreter)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,layout",
    [
        ((2, 5, 3, 4), None),
        ((2, 70, 3, 3), None),
        ((3, 9), None),
        ((2, 6, 3, 5), torch.channels_last),
        ((1, 3, 2, 5, 2), None),
    ],
)
def test_triton_matches_cpu(dtype, shape, layout):
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    kernels = cuda_functions("pixel_norm")  # the ops' CUDA functions: checks + Triton launchers

    x, g = _randn(shape, dtype), _randn(shape, dtype)
    if layout is not None:
        x = x.to(memory_format=layout)
    x64, g64 = x.double(), g.double()  # the CPU kernel in float64: the reference for both
    got, want = kernels.pixel_norm(x, 1e-8), ops.pixel_norm(x, 1e-8)
    assert got.stride() == want.stride()
    assert_kernels_agree(got, want, ops.pixel_norm(x64, 1e-8), what=f"y {dtype} {shape}")
    assert_kernels_agree(
        kernels.pixel_norm_backward(g, x, 1e-8),
        ops.pixel_norm_backward(g, x, 1e-8),
        ops.pixel_norm_backward(g64, x64, 1e-8),
        what=f"grad_x {dtype} {shape}",
    )
    assert kernels.pixel_norm(torch.zeros(0, 3, 2), 1e-8).shape == (0, 3, 2)
