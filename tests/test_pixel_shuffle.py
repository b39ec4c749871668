"""fastgen.functional.pixel_shuffle / pixel_unshuffle / pixel_shuffle_prelu / prelu, their ops
and modules, against torch.nn.functional (fastgen.reference.pixel_shuffle)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgen
from fastgen import functional as F
from fastgen.reference import pixel_shuffle as R
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]
LAYOUTS = ["contiguous", "channels_last"]
# (batch dims, C out, r, H, W): tails shorter than a vector, whole vectors (16 floats) plus a
# tail, factor 1 (plain PReLU), 3 (scalar path) and extra leading dims.
SHAPES = [
    ((2,), 3, 2, 5, 7),
    ((1,), 17, 2, 3, 24),
    ((2,), 32, 2, 2, 3),
    ((3,), 2, 3, 4, 5),
    ((2,), 5, 1, 3, 37),
    ((2,), 19, 1, 2, 3),
]


def _x(batch, channels, r, h, w, dtype=torch.float32, layout="contiguous"):
    x = torch.randn(*batch, channels * r * r, h, w, dtype=torch.float64).to(dtype)
    if layout == "channels_last" and x.dim() == 4:
        x = x.to(memory_format=torch.channels_last)
    return x


def _weight(channels, per_channel, dtype=torch.float32):
    return (torch.rand(channels if per_channel else 1, dtype=torch.float64) * 0.6 - 0.1).to(dtype)


def _shuffle_prelu_grads(fn, x, weight, r, grad):
    x = x.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    y = fn(x, weight, r)
    gx, gw = torch.autograd.grad(y, (x, weight), grad)
    return y.detach(), gx, gw


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_pixel_shuffle_prelu_matches_torch(shape, dtype, layout, per_channel):
    batch, channels, r, h, w = shape
    x = _x(batch, channels, r, h, w, dtype, layout)
    weight = _weight(channels, per_channel, dtype)
    grad = torch.randn(*batch, channels, h * r, w * r, dtype=torch.float64).to(dtype)
    if layout == "channels_last":
        grad = grad.to(memory_format=torch.channels_last)
    y, gx, gw = _shuffle_prelu_grads(F.pixel_shuffle_prelu, x, weight, r, grad)
    ey, egx, egw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x, weight, r, grad)
    # Forward bit-exact, in torch's memory format; the input gradient is exact too.
    assert torch.equal(y, ey) and y.stride() == ey.stride()
    assert torch.equal(gx, egx)
    assert gx.stride() == x.stride()
    # The weight gradient is a sum: as accurate as eager's against float64.
    _, _, rgw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x.double(), weight.double(), r, grad.double())
    assert_parity(gw, egw, rgw, what=f"grad_weight {dtype} {shape} {layout}")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pixel_shuffle_and_unshuffle_match_torch(shape, dtype, layout):
    batch, channels, r, h, w = shape
    x = _x(batch, channels, r, h, w, dtype, layout).requires_grad_()
    y = F.pixel_shuffle(x, r)
    ey = R.pixel_shuffle(x, r)
    assert torch.equal(y, ey) and y.stride() == ey.stride()
    grad = torch.randn_like(ey)
    assert torch.equal(torch.autograd.grad(y, x, grad)[0], torch.autograd.grad(ey, x, grad)[0])
    big = ey.detach().requires_grad_()
    u = F.pixel_unshuffle(big, r)
    eu = R.pixel_unshuffle(big, r)
    assert torch.equal(u, eu) and u.stride() == eu.stride()
    grad = torch.randn_like(eu)
    assert torch.equal(torch.autograd.grad(u, big, grad)[0], torch.autograd.grad(eu, big, grad)[0])


@pytest.mark.parametrize("shape", [(), (7,), (4, 3), (2, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 4)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_prelu_matches_torch_for_every_rank(shape, per_channel):
    channels = shape[1] if len(shape) >= 2 else 1
    x = torch.randn(shape, requires_grad=True)
    weight = _weight(channels, per_channel).requires_grad_()
    y, ey = F.prelu(x, weight), R.prelu(x, weight)
    assert torch.equal(y, ey)
    grad = torch.randn(shape)
    gx, gw = torch.autograd.grad(y, (x, weight), grad)
    egx, egw = torch.autograd.grad(ey, (x, weight), grad)
    assert torch.equal(gx, egx)
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    rgw = torch.autograd.grad(R.prelu(x64, w64), w64, grad.double())[0]
    assert_parity(gw, egw, rgw, what=f"grad_weight {shape} per_channel={per_channel}")


def test_float64_weight_gradient_is_exact_to_rounding():
    x, weight = _x((3,), 6, 2, 7, 9, torch.float64), _weight(6, True, torch.float64)
    grad = torch.randn(3, 6, 14, 18, dtype=torch.float64)
    _, gx, gw = _shuffle_prelu_grads(F.pixel_shuffle_prelu, x, weight, 2, grad)
    _, egx, egw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x, weight, 2, grad)
    assert torch.equal(gx, egx)
    torch.testing.assert_close(gw, egw, rtol=1e-13, atol=1e-13)


def test_large_weight_gradient_sum_is_accurate():
    # Many terms per channel (rows longer than the vector flush interval, several tasks).
    for layout in LAYOUTS:
        x, weight = _x((4,), 16, 2, 9, 150, torch.float32, layout), _weight(1, False)
        grad = torch.randn(4, 16, 18, 300) - 0.3
        if layout == "channels_last":
            grad = grad.to(memory_format=torch.channels_last)
        _, _, gw = _shuffle_prelu_grads(F.pixel_shuffle_prelu, x, weight, 2, grad)
        _, _, egw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x, weight, 2, grad)
        _, _, rgw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x.double(), weight.double(), 2, grad.double())
        assert_parity(gw, egw, rgw, what=f"grad_weight {layout}")


def test_nan_and_signed_zero_follow_torch():
    x = torch.tensor([[[[float("nan"), -0.0], [0.0, -2.0]]]]).repeat(1, 4, 1, 1)
    weight = torch.tensor([0.5])
    y = F.pixel_shuffle_prelu(x, weight, 2)
    ey = R.pixel_shuffle_prelu(x, weight, 2)
    assert torch.equal(torch.isnan(y), torch.isnan(ey))
    assert torch.equal(y.nan_to_num(), ey.nan_to_num())
    assert torch.equal(torch.signbit(y), torch.signbit(ey))


def test_result_does_not_depend_on_thread_count():
    x, weight = _x((8,), 16, 2, 24, 24), _weight(1, False)
    grad = torch.randn(8, 16, 48, 48)
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out.append(ops.pixel_shuffle_prelu_backward(grad, x, weight, 2, True, True))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*out))


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("r", [1, 2, 3])
def test_gradcheck_and_gradgradcheck(layout, per_channel, r):
    x = _x((2,), 3, r, 3, 2, torch.float64, layout)
    x = (x + 0.05 * x.sign()).requires_grad_()  # keep the PReLU kink away from the finite differences
    weight = _weight(3, per_channel, torch.float64).requires_grad_()
    fn = lambda x, w: F.pixel_shuffle_prelu(x, w, r)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, weight))
    assert torch.autograd.gradgradcheck(fn, (x, weight))


def test_gradcheck_shuffle_unshuffle_prelu():
    x = _x((2,), 2, 2, 3, 3, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: F.pixel_shuffle(t, 2), (x,))
    assert torch.autograd.gradgradcheck(lambda t: F.pixel_shuffle(t, 2), (x,))
    big = torch.randn(2, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.pixel_unshuffle(t, 2), (big,))
    assert torch.autograd.gradgradcheck(lambda t: F.pixel_unshuffle(t, 2), (big,))
    v = (torch.randn(3, 4, 5, dtype=torch.float64) + 0.1).requires_grad_()
    weight = _weight(4, True, torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(F.prelu, (v, weight))
    assert torch.autograd.gradgradcheck(F.prelu, (v, weight))


def test_backward_op_gradcheck_with_one_gradient_requested():
    x = _x((1,), 2, 2, 2, 3, torch.float64)
    x = x + 0.05 * x.sign()
    weight = _weight(2, True, torch.float64).requires_grad_()
    grad = torch.randn(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    for flags in ((True, False), (False, True)):
        idx = 0 if flags[0] else 1
        fn = lambda g, w, xx: ops.pixel_shuffle_prelu_backward(g, xx, w, 2, *flags)[idx]  # noqa: E731
        assert torch.autograd.gradcheck(fn, (grad, weight, x.clone().requires_grad_()))


def test_third_order_gradient_matches_reference():
    x = _x((2,), 3, 2, 2, 3, torch.float64)
    x = (x + 0.05 * x.sign()).requires_grad_()
    weight = _weight(3, True, torch.float64).requires_grad_()

    def third(fn):
        y = fn(x, weight, 2)
        gx, gw = torch.autograd.grad((y * y.detach().cos()).sum(), (x, weight), create_graph=True)
        g2 = torch.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (x, weight), create_graph=True)
        return torch.autograd.grad(g2[0].sum() + g2[1].sum(), (x, weight), allow_unused=True)

    for a, b in zip(third(F.pixel_shuffle_prelu), third(R.pixel_shuffle_prelu)):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- layouts


def test_non_contiguous_inputs():
    base = torch.randn(2, 12, 10, 14)
    cases = [
        base[:, :, ::2, ::2],
        base.transpose(2, 3),
        base[:, :8],
        base.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)[..., 1:],
    ]
    for x in cases:
        x = x.detach().requires_grad_()
        weight = _weight(x.shape[1] // 4, True).requires_grad_()
        y, ey = F.pixel_shuffle_prelu(x, weight, 2), R.pixel_shuffle_prelu(x, weight, 2)
        assert torch.equal(y, ey)
        grad = torch.randn(ey.shape)
        a, b = torch.autograd.grad(y, (x, weight), grad), torch.autograd.grad(ey, (x, weight), grad)
        assert torch.equal(a[0], b[0])
        _, _, rgw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x.double(), weight.double(), 2, grad.double())
        assert_parity(a[1], b[1], rgw, what=f"grad_weight {tuple(x.shape)} {x.stride()}")


def test_mixed_layout_gradient():
    x = _x((2,), 4, 2, 3, 5, layout="channels_last").requires_grad_()
    weight = _weight(4, True).requires_grad_()
    grad = torch.randn(2, 4, 6, 10)  # contiguous, while x is channels_last
    y = F.pixel_shuffle_prelu(x, weight, 2)
    assert y.is_contiguous(memory_format=torch.channels_last)
    gx, gw = torch.autograd.grad(y, (x, weight), grad)
    egx, egw = torch.autograd.grad(R.pixel_shuffle_prelu(x, weight, 2), (x, weight), grad)
    assert torch.equal(gx, egx) and gx.is_contiguous(memory_format=torch.channels_last)
    _, _, rgw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x.double(), weight.double(), 2, grad.double())
    assert_parity(gw, egw, rgw, what="grad_weight")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_zero_size_batch(layout):
    x = _x((0,), 3, 2, 4, 5, layout=layout).requires_grad_()
    weight = _weight(3, True).requires_grad_()
    y = F.pixel_shuffle_prelu(x, weight, 2)
    assert y.shape == (0, 3, 8, 10)
    gx, gw = torch.autograd.grad(y, (x, weight), torch.zeros(y.shape))
    assert gx.shape == x.shape and torch.equal(gw, torch.zeros(3))
    assert F.pixel_shuffle(x, 2).shape == (0, 3, 8, 10)
    assert F.pixel_unshuffle(y, 2).shape == (0, 12, 4, 5)
    assert F.pixel_shuffle_prelu(torch.zeros(2, 0, 3, 3), torch.ones(1), 2).shape == (2, 0, 6, 6)


# --------------------------------------------------------------------------- torch.library


def test_opcheck():
    for layout in LAYOUTS:
        x = _x((2,), 3, 2, 3, 5, layout=layout).requires_grad_()
        for weight in (_weight(3, True).requires_grad_(), _weight(1, False).requires_grad_()):
            torch.library.opcheck(ops.pixel_shuffle_prelu, (x, weight, 2))
            grad = torch.randn(2, 3, 6, 10)
            for flags in ((True, True), (True, False), (False, True)):
                torch.library.opcheck(ops.pixel_shuffle_prelu_backward, (grad, x, weight, 2, *flags))
        torch.library.opcheck(ops.pixel_shuffle, (x, 2))
        torch.library.opcheck(ops.pixel_unshuffle, (x, 1))
        torch.library.opcheck(ops.pixel_unshuffle, (torch.randn(2, 3, 4, 6, requires_grad=True), 2))
    torch.library.opcheck(ops.pixel_shuffle, (torch.randn(2, 1, 8, 3, 3, requires_grad=True), 2))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()

    def step(fns, x, weight, w1):
        shuffle_prelu, shuffle, unshuffle, prelu = fns
        y = shuffle_prelu(x, weight, 2)
        z = prelu(unshuffle(shuffle(x, 2) * 2, 2), w1)
        return (y * y).sum() + z.mean()

    fast = (F.pixel_shuffle_prelu, F.pixel_shuffle, F.pixel_unshuffle, F.prelu)
    ref = (R.pixel_shuffle_prelu, R.pixel_shuffle, R.pixel_unshuffle, R.prelu)
    compiled = torch.compile(lambda *a: step(fast, *a), fullgraph=True)
    for layout in LAYOUTS:
        x = _x((2,), 4, 2, 3, 5, layout=layout).requires_grad_()
        weight, w1 = _weight(4, True).requires_grad_(), _weight(16, True).requires_grad_()
        out = compiled(x, weight, w1)
        grads = torch.autograd.grad(out, (x, weight, w1))
        ref_out = step(ref, x, weight, w1)
        ref_grads = torch.autograd.grad(ref_out, (x, weight, w1))
        inputs64 = [t.detach().double().requires_grad_() for t in (x, weight, w1)]
        out64 = step(ref, *inputs64)
        assert_parity(out.detach(), ref_out.detach(), out64.detach(), what=f"compiled output {layout}")
        assert_parity_tree(grads, ref_grads, torch.autograd.grad(out64, inputs64), what=f"compiled grads {layout}")


def test_double_backward_under_create_graph_in_a_critic():
    # WGAN-GP style: the gradient penalty differentiates through the layer's backward.
    x = _x((2,), 4, 2, 3, 3).requires_grad_()

    def penalty(fn, weight, x=x):
        y = fn(x, weight, 2)
        g = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)[0]
        return torch.autograd.grad((g.norm() - 1) ** 2, weight)[0]

    weight = _weight(4, True).requires_grad_()
    x64, w64 = x.detach().double().requires_grad_(), weight.detach().double().requires_grad_()
    assert_parity(
        penalty(F.pixel_shuffle_prelu, weight),
        penalty(R.pixel_shuffle_prelu, weight),
        penalty(R.pixel_shuffle_prelu, w64, x64),
        what="penalty gradient",
    )


# --------------------------------------------------------------------------- modules


def test_modules_are_drop_in():
    x = _x((2,), 4, 2, 3, 5)
    torch.manual_seed(0)
    fused = fastgen.nn.PixelShufflePReLU(2, num_parameters=4, init=0.1)
    eager = R.PixelShufflePReLU(2, num_parameters=4, init=0.1)
    assert fused.state_dict().keys() == eager.state_dict().keys() == torch.nn.PReLU(4).state_dict().keys()
    eager.load_state_dict(fused.state_dict())
    assert torch.equal(fused(x), eager(x))
    assert torch.equal(fused(x), torch.nn.PReLU(4, init=0.1)(torch.nn.PixelShuffle(2)(x)))
    assert repr(fused) == "PixelShufflePReLU(upscale_factor=2, num_parameters=4)"
    assert torch.equal(fastgen.nn.PixelShuffle(2)(x), torch.nn.PixelShuffle(2)(x))
    big = fused(x)
    assert torch.equal(fastgen.nn.PixelUnshuffle(2)(big), torch.nn.PixelUnshuffle(2)(big))
    prelu = fastgen.nn.PReLU(16, init=0.3)
    prelu.load_state_dict(torch.nn.PReLU(16, init=0.2).state_dict())
    assert torch.equal(prelu(x), torch.nn.PReLU(16, init=0.2)(x))
    assert isinstance(prelu, torch.nn.PReLU) and isinstance(fastgen.nn.PixelShuffle(2), torch.nn.PixelShuffle)
    assert fastgen.nn.PixelShufflePReLU(3, dtype=torch.float64).weight.dtype == torch.float64


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    x = torch.randn(2, 8, 3, 3)
    w = torch.ones(1)
    _raises(
        r"fastgen.pixel_shuffle: input.size\(-3\) \(channels\) must be divisible by upscale_factor\*\*2 = 9, got 8",
        F.pixel_shuffle,
        x,
        3,
    )
    _raises(r"fastgen.pixel_shuffle: upscale_factor must be positive, got 0", F.pixel_shuffle, x, 0)
    _raises(r"fastgen.pixel_shuffle: upscale_factor must be an int, got float", F.pixel_shuffle, x, 2.0)
    _raises(
        r"fastgen.pixel_shuffle: input must have at least 3 dimensions \(\*, C, H, W\), got 2",
        F.pixel_shuffle,
        torch.randn(4, 4),
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle: input must be a floating-point tensor .* got torch.int64",
        F.pixel_shuffle,
        torch.ones(1, 4, 2, 2, dtype=torch.long),
        2,
    )
    _raises(
        r"fastgen.pixel_unshuffle: input's height and width must be divisible by downscale_factor = 2, got 3 x 3",
        F.pixel_unshuffle,
        x,
        2,
    )
    _raises(r"fastgen.pixel_unshuffle: downscale_factor must be positive, got -1", F.pixel_unshuffle, x, -1)
    _raises(
        r"fastgen.pixel_shuffle_prelu: weight must have 1 or C = 2 \(output channels\) elements, got 3",
        F.pixel_shuffle_prelu,
        x,
        torch.ones(3),
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu: weight must have the dtype of input \(torch.float32\), got torch.float64",
        F.pixel_shuffle_prelu,
        x,
        torch.ones(1, dtype=torch.float64),
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu: weight must be a scalar or 1-D tensor, got 2 dimensions",
        F.pixel_shuffle_prelu,
        x,
        torch.ones(1, 1),
        2,
    )
    _raises(r"fastgen.pixel_shuffle_prelu: weight must be a torch.Tensor", F.pixel_shuffle_prelu, x, 0.25, 2)
    _raises(
        r"fastgen.pixel_shuffle_prelu: input must be 4-D \(N, C\*r\*r, H, W\) with a per-channel weight, got 3-D",
        F.pixel_shuffle_prelu,
        x[0],
        torch.ones(2),
        2,
    )
    _raises(
        r"fastgen.prelu: weight must have 1 or C = 8 \(input.size\(1\)\) elements, got 3", F.prelu, x, torch.ones(3)
    )
    _raises(r"fastgen.prelu: input must be a torch.Tensor", F.prelu, [1.0], w)
    _raises(r"upscale_factor must be a positive int", fastgen.nn.PixelShufflePReLU, 0)
    _raises(r"num_parameters must be a positive int", fastgen.nn.PixelShufflePReLU, 2, 0)


def test_bad_inputs_to_the_ops_directly():
    x = torch.randn(2, 8, 3, 3)
    _raises(
        r"fastgen.pixel_shuffle: input.size\(-3\) \(channels\) must be divisible by upscale_factor\*\*2 = 9, got 8",
        ops.pixel_shuffle,
        x,
        3,
    )
    _raises(r"fastgen.pixel_shuffle: upscale_factor must be positive, got 0", ops.pixel_shuffle, x, 0)
    _raises(r"fastgen.pixel_shuffle: input must have at least 3 dimensions", ops.pixel_shuffle, torch.randn(4, 4), 2)
    _raises(
        r"fastgen.pixel_unshuffle: input's height and width must be divisible by downscale_factor = 2",
        ops.pixel_unshuffle,
        x,
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu: weight must have 1 or C = 2 \(output channels\) elements, got 3",
        ops.pixel_shuffle_prelu,
        x,
        torch.ones(3),
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu: weight must have the dtype of input",
        ops.pixel_shuffle_prelu,
        x,
        torch.ones(1, dtype=torch.float64),
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu_backward: grad_output must have the output's shape \(2, 2, 6, "
        r"6\), got \(2, 2, 6, 5\)",
        ops.pixel_shuffle_prelu_backward,
        torch.randn(2, 2, 6, 5),
        x,
        torch.ones(1),
        2,
        True,
        True,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu_backward: grad_output must have the dtype of input",
        ops.pixel_shuffle_prelu_backward,
        torch.randn(2, 2, 6, 6).double(),
        x,
        torch.ones(1),
        2,
        True,
        True,
    )
    # The fake impls make the same checks (what torch.compile and meta tensors see).
    meta = torch.empty(2, 8, 3, 3, device="meta")
    _raises(r"fastgen.pixel_shuffle: input.size\(-3\) \(channels\) must be divisible", ops.pixel_shuffle, meta, 3)
    _raises(r"fastgen.pixel_unshuffle: input's height and width must be divisible", ops.pixel_unshuffle, meta, 2)
    _raises(
        r"fastgen.pixel_shuffle_prelu: weight must have 1 or C = 2",
        ops.pixel_shuffle_prelu,
        meta,
        torch.empty(3, device="meta"),
        2,
    )
    _raises(
        r"fastgen.pixel_shuffle_prelu_backward: grad_output must have the output's shape",
        ops.pixel_shuffle_prelu_backward,
        torch.empty(2, 2, 6, 5, device="meta"),
        meta,
        torch.empty(1, device="meta"),
        2,
        True,
        True,
    )
    out = ops.pixel_shuffle_prelu(meta.to(memory_format=torch.channels_last), torch.empty(2, device="meta"), 2)
    assert out.shape == (2, 2, 6, 6) and out.is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- hypothesis


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),  # batch 0: test_zero_size_batch (torch's own PixelShuffleBackward fails on it)
    channels=st.integers(1, 20),
    r=st.integers(1, 3),
    h=st.integers(1, 5),
    w=st.integers(1, 20),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16]),
    layout=st.sampled_from(["contiguous", "channels_last", "sliced"]),
    per_channel=st.booleans(),
)
def test_random_shapes_dtypes_and_layouts(batch, channels, r, h, w, dtype, layout, per_channel):
    x = _x((batch,), channels, r, h, w, dtype, "channels_last" if layout == "channels_last" else "contiguous")
    if layout == "sliced":
        x = torch.cat([x, x], dim=-1)[..., ::2]
    weight = _weight(channels, per_channel, dtype)
    grad = torch.randn(batch, channels, h * r, w * r).to(dtype)
    y, gx, gw = _shuffle_prelu_grads(F.pixel_shuffle_prelu, x, weight, r, grad)
    ey, egx, egw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x, weight, r, grad)
    assert torch.equal(y, ey) and y.stride() == ey.stride()
    assert torch.equal(gx, egx)
    if dtype == torch.float64:  # eager is the float64 reference itself: the sums agree to rounding
        torch.testing.assert_close(gw, egw, rtol=1e-12, atol=1e-12)
    else:
        _, _, rgw = _shuffle_prelu_grads(R.pixel_shuffle_prelu, x.double(), weight.double(), r, grad.double())
        assert_parity(gw, egw, rgw, what="grad_weight")
    assert torch.equal(F.pixel_unshuffle(y, r), R.pixel_unshuffle(ey, r))


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("pixel_shuffle")  # the ops' CUDA functions: checks + Triton launchers


def _close(a, b, ref, what):
    """a: the Triton kernel, b: the CPU kernel, ref: the CPU kernel in float64. (The interpreter
    rounds float32 -> bfloat16 toward zero: one bfloat16 ulp, inside the parity rule's floor.)"""
    assert a.shape == b.shape and a.dtype == b.dtype and a.stride() == b.stride()
    assert_kernels_agree(a, b, ref, what=what)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("r", [1, 2, 3])
def test_triton_matches_cpu(dtype, layout, r):
    kernels = _triton()
    x = _x((2,), 3, r, 3, 5, dtype, layout)
    grad = torch.randn(2, 3, 3 * r, 5 * r).to(dtype)
    x64, grad64 = x.double(), grad.double()  # the CPU kernel's float64 run is the reference
    for weight in (_weight(3, True, dtype), _weight(1, False, dtype)):
        what = f"{dtype} {layout} r={r} weight {tuple(weight.shape)}"
        _close(
            kernels.pixel_shuffle_prelu(x, weight, r),
            ops.pixel_shuffle_prelu(x, weight, r),
            ops.pixel_shuffle_prelu(x64, weight.double(), r),
            what,
        )
        for flags in ((True, True), (True, False), (False, True)):
            got = kernels.pixel_shuffle_prelu_backward(grad, x, weight, r, *flags)
            want = ops.pixel_shuffle_prelu_backward(grad, x, weight, r, *flags)
            ref = ops.pixel_shuffle_prelu_backward(grad64, x64, weight.double(), r, *flags)
            for i, (a, b, c) in enumerate(zip(got, want, ref)):
                _close(a, b, c, f"backward {what} {flags} output {i}")
    big = ops.pixel_shuffle(x, r)
    assert torch.equal(kernels.pixel_shuffle(x, r), big)
    assert torch.equal(kernels.pixel_unshuffle(big, r), ops.pixel_unshuffle(big, r))


def test_triton_leading_dims_and_empty_batch():
    kernels = _triton()
    x = torch.randn(2, 3, 4, 2, 3)
    assert torch.equal(kernels.pixel_shuffle(x, 2), ops.pixel_shuffle(x, 2))
    empty = torch.zeros(0, 8, 3, 3)
    weight = torch.ones(2)
    assert kernels.pixel_shuffle_prelu(empty, weight, 2).shape == (0, 2, 6, 6)
    gx, gw = kernels.pixel_shuffle_prelu_backward(torch.zeros(0, 2, 6, 6), empty, weight, 2, True, True)
    assert gx.shape == empty.shape and torch.equal(gw, torch.zeros(2))


# --- hardening (issue 12): regressions -------------------------------------------------------


@pytest.mark.parametrize("factor", [2**32, 2**62, 2**31 + 1])
@pytest.mark.parametrize("op", ["pixel_shuffle", "pixel_unshuffle", "pixel_shuffle_prelu"])
def test_huge_factor_raises_in_a_subprocess(op, factor):
    # r * r overflowed to 0 and was used as a divisor: the process died of SIGFPE.
    import subprocess
    import sys

    args = "torch.randn(1, 16, 2, 2), torch.ones(1)" if op == "pixel_shuffle_prelu" else "torch.randn(1, 16, 2, 2)"
    code = (
        "import torch, fastgen\n"
        "try:\n"
        f"    torch.ops.fastgen.{op}({args}, {factor})\n"
        "except (ValueError, RuntimeError) as e:\n"
        "    assert 'fastgen.' in str(e) and 'factor' in str(e), str(e)\n"
        "    print('raised')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"rc={proc.returncode}: {proc.stderr[-2000:]}"
    assert "raised" in proc.stdout


def test_prelu_op_rejects_3d_input_with_per_channel_weight():
    # The functional API rejects it; the op accepted it and applied the weight per channel of
    # an unbatched input, where the functional API's contract is 4-D only.
    with pytest.raises(ValueError, match="fastgen.pixel_shuffle_prelu: .*weight"):
        torch.ops.fastgen.pixel_shuffle_prelu(torch.randn(4, 2, 2), torch.ones(4), 1)


@pytest.mark.slow
def test_more_than_2_31_elements_index_in_64_bit():
    # 8 x 16384 x 16400 bfloat16 = 2^31 + 2^21 elements (4.3 GB in, 4.3 GB out): the offsets of
    # the last channels pass 2^31. Channel k holds k, so every output element names its source.
    r, C, H, W = 2, 2, 16384, 16400
    x = torch.empty(1, C * r * r, H, W, dtype=torch.bfloat16)
    assert x.numel() > 2**31
    x.copy_(torch.arange(C * r * r, dtype=torch.bfloat16).view(1, -1, 1, 1).expand_as(x))
    out = torch.ops.fastgen.pixel_shuffle(x, r)
    del x
    assert out.shape == (1, C, H * r, W * r)
    for c, y, xx in [
        (0, 0, 0),
        (1, 2 * H - 1, 2 * W - 1),
        (1, 2 * H - 2, 2 * W - 1),
        (1, H, 3),
        (0, 2 * H - 1, 2 * W - 2),
    ]:
        assert out[0, c, y, xx].item() == c * r * r + (y % r) * r + (xx % r), (c, y, xx)
    # Every output row of the last channel (its offsets all past 2^31): the 2 x 2 pattern of sources.
    tail = out[0, C - 1, -2:, :].float()
    want = torch.tensor([[4.0, 5.0], [6.0, 7.0]]).repeat(1, W)
    assert torch.equal(tail, want)
