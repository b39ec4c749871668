"""fastgen.functional.instance_norm, fastgen.nn.InstanceNorm1d/2d/3d and their ops."""

from __future__ import annotations

import copy
import warnings
import zlib

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgen
from fastgen import functional as F
from fastgen.reference import instance_norm as R
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
ACTS = (None, "relu", "leaky_relu")
# Odd shapes: planes that are not whole vectors, 1-D/2-D/3-D spatial, channels that are not
# whole vectors, a single sample.
SHAPES = [(2, 3, 5, 7), (3, 37, 6, 5), (1, 20, 33), (2, 4, 3, 5, 7), (4, 2, 2)]


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """Channels innermost for any rank: channels_last(_3d), or (N, L, C) memory for 3-D."""
    return t.movedim(1, -1).contiguous().movedim(-1, 1)


def _layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return _channels_last(t)
    if layout == "strided":
        return torch.stack([t, t], dim=-1)[..., 0]  # same values, not dense: the kernels copy it
    return t


def _inputs(shape, dtype=torch.float64, affine=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5
    w = torch.randn(shape[1], generator=g, dtype=torch.float64) if affine else None
    b = torch.randn(shape[1], generator=g, dtype=torch.float64) if affine else None
    res = torch.randn(shape, generator=g, dtype=torch.float64)
    grad = torch.randn(shape, generator=g, dtype=torch.float64)
    cast = lambda t: t.to(dtype) if t is not None else None  # noqa: E731
    return cast(x), cast(w), cast(b), cast(res), cast(grad)


def _run(fn, x, w, b, res, grad, **kwargs):
    """Output and gradients of (x, weight, bias, residual)."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b, res)]
    out = fn(leaves[0], weight=leaves[1], bias=leaves[2], residual=leaves[3], **kwargs)
    wrt = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, wrt, grad)
    return [out.detach(), *grads]


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("activation", ACTS)
def test_forward_and_gradients_match_reference(shape, dtype, activation):
    # A seed per case that is the same in every process (hash() of a str or None is not).
    x, w, b, res, grad = _inputs(shape, dtype, seed=zlib.crc32(repr((shape, activation)).encode()) % 1000)
    kwargs = dict(activation=activation, negative_slope=0.2)
    fast = _run(F.instance_norm, x, w, b, res, grad, **kwargs)
    eager = _run(R.instance_norm, x, w, b, res, grad, **kwargs)
    ref = _run(R.instance_norm, *(t.double() for t in (x, w, b, res, grad)), **kwargs)
    for name, f, e, r in zip(("out", "grad_x", "grad_w", "grad_b", "grad_res"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {dtype} {shape} {activation}")


@pytest.mark.parametrize("layout", ["channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 37, 6, 5), (3, 5, 4, 3, 3), (2, 19, 11)])
def test_layouts_match_reference_and_keep_channels_last(layout, dtype, shape):
    x, w, b, res, grad = _inputs(shape, dtype)
    x_l, res_l, grad_l = (_layout(t, layout) for t in (x, res, grad))
    kwargs = dict(activation="leaky_relu", negative_slope=0.2)
    fast = _run(F.instance_norm, x_l, w, b, res_l, grad_l, **kwargs)
    eager = _run(R.instance_norm, x, w, b, res, grad, **kwargs)
    ref = _run(R.instance_norm, *(t.double() for t in (x, w, b, res, grad)), **kwargs)
    for name, f, e, r in zip(("out", "grad_x", "grad_w", "grad_b", "grad_res"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {layout} {dtype} {shape}")
    if layout == "channels_last":
        # Output and input gradient keep the input's memory format (torch's instance_norm drops it).
        assert fast[0].stride() == x_l.stride() and fast[1].stride() == x_l.stride()


def test_mixed_layouts_of_residual_and_grad():
    x, w, b, res, grad = _inputs((2, 18, 5, 6), torch.float32)
    cl = _channels_last(x)
    fast = _run(
        F.instance_norm,
        cl,
        w,
        b,
        res,
        _channels_last(grad).transpose(2, 3).contiguous().transpose(2, 3),
        activation="relu",
    )
    eager = _run(R.instance_norm, x, w, b, res, grad, activation="relu")
    ref = _run(R.instance_norm, *(t.double() for t in (x, w, b, res, grad)), activation="relu")
    assert_parity_tree(fast, eager, ref, what="mixed layouts")
    assert fast[0].is_contiguous(memory_format=torch.channels_last)
    # Batch 1: a channel slice of a wider tensor (what cat's backward hands over) is contiguous
    # but has another batch stride; the kernels take it as it is.
    x1, grad1 = x[:1], grad[:1]
    for layout in ("contiguous", "channels_last"):
        wide = _layout(torch.cat([grad1, grad1, grad1], 1), layout)[:, 18:36]
        assert wide.stride() != _layout(x1, layout).stride()
        fast = _run(F.instance_norm, _layout(x1, layout), w, b, wide, wide, activation="relu")
        eager = _run(R.instance_norm, x1, w, b, grad1, grad1, activation="relu")
        ref = _run(R.instance_norm, *(t.double() for t in (x1, w, b, grad1, grad1)), activation="relu")
        assert_parity_tree(fast, eager, ref, what=f"channel slice {layout}")


@pytest.mark.parametrize(
    "shape,layout",
    [((1, 3, 400, 400), "contiguous"), ((2, 48, 60, 50), "channels_last"), ((1, 3, 300, 300), "channels_last")],
)
def test_planes_bigger_than_one_task(shape, layout):
    # csrc/instance_norm.cpp splits planes over 512 KiB into chunks whose moments are merged.
    x, w, b, res, grad = _inputs(shape, torch.float32)
    x_l, res_l, grad_l = (_layout(t, layout) for t in (x, res, grad))
    fast = _run(F.instance_norm, x_l, w, b, res_l, grad_l)
    eager = _run(R.instance_norm, x, w, b, res, grad)
    ref = _run(R.instance_norm, *(t.double() for t in (x, w, b, res, grad)))
    for name, f, e, r in zip(("out", "grad_x", "grad_w", "grad_b", "grad_res"), fast, eager, ref):
        assert_parity(f, e, r, what=f"{name} {shape} {layout}")


def test_large_mean_small_variance_statistics():
    # Two-pass statistics: a large offset does not eat the variance.
    x = (1000 + 1e-2 * torch.randn(2, 3, 50, 50, dtype=torch.float64)).float()
    for layout in ("contiguous", "channels_last"):
        out = F.instance_norm(_layout(x, layout))
        assert_parity(out, TF.instance_norm(x), TF.instance_norm(x.double()), what=layout)


def test_float64_is_exact_to_rounding():
    x, w, b, res, grad = _inputs((3, 5, 9, 11))
    fast = _run(F.instance_norm, x, w, b, res, grad, activation="leaky_relu", negative_slope=0.3)
    eager = _run(R.instance_norm, x, w, b, res, grad, activation="leaky_relu", negative_slope=0.3)
    for f, e in zip(fast, eager):
        torch.testing.assert_close(f, e, rtol=1e-12, atol=1e-12)


def test_nan_propagates_per_plane():
    x = torch.randn(2, 3, 4, 5)
    x[0, 1, 2, 3] = float("nan")
    for activation in ACTS:
        out = F.instance_norm(x, activation=activation)
        assert torch.isnan(out[0, 1]).all()
        assert not torch.isnan(out[0, 0]).any() and not torch.isnan(out[1]).any()


def test_result_does_not_depend_on_thread_count():
    x, w, b, res, grad = _inputs((4, 64, 30, 40), torch.float32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for layout in ("contiguous", "channels_last"):
                results.append(
                    _run(
                        F.instance_norm,
                        _layout(x, layout),
                        w,
                        b,
                        _layout(res, layout),
                        _layout(grad, layout),
                        activation="relu",
                    )
                )
    finally:
        torch.set_num_threads(before)
    for a, b_ in zip(results[0] + results[1], results[2] + results[3]):
        assert torch.equal(a, b_)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 40),
    spatial=st.lists(st.integers(1, 9), min_size=1, max_size=3).filter(lambda s: torch.Size(s).numel() > 1),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
    layout=st.sampled_from(["contiguous", "channels_last", "strided"]),
    activation=st.sampled_from(ACTS),
    affine=st.booleans(),
    with_residual=st.booleans(),
)
def test_random_shapes_dtypes_and_layouts(batch, channels, spatial, dtype, layout, activation, affine, with_residual):
    shape = (batch, channels, *spatial)
    x, w, b, res, grad = _inputs(shape, dtype, affine=affine)
    res = res if with_residual else None
    kwargs = dict(activation=activation, negative_slope=0.1)
    x_l = _layout(x, layout)
    fast = _run(F.instance_norm, x_l, w, b, _layout(res, layout) if res is not None else None, grad, **kwargs)
    eager = _run(R.instance_norm, x, w, b, res, grad, **kwargs)
    ref = _run(
        R.instance_norm,
        x.double(),
        w.double() if affine else None,
        b.double() if affine else None,
        res.double() if res is not None else None,
        grad.double(),
        **kwargs,
    )
    for i, (f, e, r) in enumerate(zip(fast, eager, ref)):
        if dtype == torch.float64:  # eager is the reference here: compare to rounding instead
            torch.testing.assert_close(f, r, rtol=1e-10, atol=1e-10)
        else:
            assert_parity(f, e, r, what=f"output {i} {shape} {dtype} {layout}")


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_gradcheck_and_gradgradcheck(activation, layout):
    x, w, b, res, _ = _inputs((2, 3, 4, 5))
    x = _layout(x, layout)
    args = tuple(t.requires_grad_() for t in (x, w, b, res))

    def fn(x, w, b, res):
        return F.instance_norm(x, weight=w, bias=b, residual=res, activation=activation, negative_slope=0.3)

    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


def test_gradcheck_without_affine_and_3d():
    x = torch.randn(2, 3, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    fn = lambda x: F.instance_norm(x, activation="relu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("activation", ACTS)
def test_gradcheck_running_stats_in_eval(activation):
    # use_input_stats=False: the running statistics normalize, and are differentiable too.
    x, w, b, _, _ = _inputs((2, 3, 4, 5))
    rm = torch.randn(3, dtype=torch.float64)
    rv = torch.rand(3, dtype=torch.float64) + 0.5
    args = tuple(t.requires_grad_() for t in (x, w, b, rm, rv))

    def fn(x, w, b, rm, rv):
        return F.instance_norm(x, rm, rv, w, b, use_input_stats=False, activation=activation, negative_slope=0.3)

    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)

    def fn_buffers(x, w, b):  # running stats as plain buffers: the op's own backward
        return F.instance_norm(x, rm.detach(), rv.detach(), w, b, use_input_stats=False, activation=activation)

    assert torch.autograd.gradcheck(fn_buffers, args[:3])
    assert torch.autograd.gradgradcheck(fn_buffers, args[:3])


def test_third_order_gradient():
    # The backward of the backward recomputes the statistics from x in torch ops, so every order
    # is exact: check it against the same network written with plain torch ops. (torch's own
    # instance_norm is wrong here: its double backward treats the saved statistics as constants.)
    x, w, b, _, _ = _inputs((2, 3, 3, 4))
    x, w, b = (t.requires_grad_() for t in (x, w, b))

    def manual(x, weight, bias, activation, negative_slope):
        mu = x.mean((2, 3), keepdim=True)
        var = ((x - mu) ** 2).mean((2, 3), keepdim=True)
        y = (x - mu) * torch.rsqrt(var + 1e-5) * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        return TF.leaky_relu(y, negative_slope)

    def third(fn):
        y = fn(x, weight=w, bias=b, activation="leaky_relu", negative_slope=0.3)
        g = torch.autograd.grad((y * y * y).sum(), x, create_graph=True)[0]
        g2 = torch.autograd.grad((g * g).sum(), (x, w), create_graph=True)
        return torch.autograd.grad(g2[0].sum() + g2[1].sum(), (x, w, b))

    for got, want in zip(third(F.instance_norm), third(manual)):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)

    x2 = x.detach()[:1].requires_grad_()
    grad = torch.randn_like(x2)

    def backward_of(x, g):  # the first-order backward as a function: gradgradcheck = third order
        return torch.autograd.grad(F.instance_norm(x, activation="relu"), x, g, create_graph=True)[0]

    assert torch.autograd.gradgradcheck(backward_of, (x2, grad.requires_grad_()))


def test_wgan_gp_style_penalty_through_the_layer():
    # A critic's gradient penalty: autograd.grad(create_graph=True), then backward again.
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(2, 3, 9, 9, requires_grad=True)
    conv64, x64 = copy.deepcopy(conv).double(), x.detach().double().requires_grad_()

    def penalty(norm, conv=conv, x=x):
        out = norm(conv(x)).mean()
        g = torch.autograd.grad(out, x, create_graph=True)[0]
        loss = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
        return torch.autograd.grad(loss, list(conv.parameters()) + [x])

    fast = fastgen.nn.InstanceNorm2d(8, affine=True, activation="leaky_relu", negative_slope=0.2)
    eager = R.InstanceNorm2d(8, affine=True, activation="leaky_relu", negative_slope=0.2)
    with torch.no_grad():
        fast.weight.uniform_(0.5, 1.5)
        fast.bias.uniform_(-0.5, 0.5)
    eager.load_state_dict(fast.state_dict())
    ref = penalty(copy.deepcopy(eager).double(), conv64, x64)
    assert_parity_tree(penalty(fast), penalty(eager), ref, what="penalty gradients")


# --------------------------------------------------------------------------- running stats, modules


@pytest.mark.parametrize("momentum", [0.1, 0.7])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_running_stats_update_like_torch(momentum, layout):
    x, w, b, _, _ = _inputs((3, 4, 5, 6), torch.float32)
    rm, rv = torch.randn(4), torch.rand(4) + 0.5
    rm2, rv2 = rm.clone(), rv.clone()
    x64, rm64, rv64, w64, b64 = (t.double() for t in (x, rm, rv, w, b))  # torch's update in float64
    out = F.instance_norm(_layout(x, layout), rm, rv, w, b, True, momentum)
    ref = TF.instance_norm(x, rm2, rv2, w, b, True, momentum)
    assert_parity(out, ref, TF.instance_norm(x64, rm64, rv64, w64, b64, True, momentum), what="train output")
    assert_parity(rm, rm2, rm64, what="running_mean")
    assert_parity(rv, rv2, rv64, what="running_var")
    # eval: the running statistics normalize
    out = F.instance_norm(_layout(x, layout), rm, rv, w, b, False, momentum, activation="relu")
    assert_parity(
        out,
        TF.relu(TF.instance_norm(x, rm2, rv2, w, b, False, momentum)),
        TF.relu(TF.instance_norm(x64, rm64, rv64, w64, b64, False, momentum)),
        what="eval output",
    )


def test_running_stats_empty_batch_and_empty_spatial_like_torch():
    for shape in ((0, 3, 4, 4), (2, 3, 0)):
        rm, rv = torch.zeros(3), torch.ones(3)
        rm2, rv2 = rm.clone(), rv.clone()
        out = F.instance_norm(torch.randn(shape), rm, rv)
        ref = TF.instance_norm(torch.randn(shape), rm2, rv2)
        assert out.shape == ref.shape
        torch.testing.assert_close(rm, rm2, equal_nan=True)
        torch.testing.assert_close(rv, rv2, equal_nan=True)


@pytest.mark.parametrize(
    "cls,shape", [("InstanceNorm1d", (3, 5, 7)), ("InstanceNorm2d", (2, 5, 4, 6)), ("InstanceNorm3d", (2, 5, 3, 4, 2))]
)
@pytest.mark.parametrize("track", [False, True])
def test_modules_are_drop_ins(cls, shape, track):
    torch.manual_seed(0)
    theirs = getattr(torch.nn, cls)(5, affine=True, track_running_stats=track, momentum=0.3)
    ours = getattr(fastgen.nn, cls)(5, affine=True, track_running_stats=track, momentum=0.3)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-1, 1)
    assert isinstance(ours, getattr(torch.nn, cls))
    ours.load_state_dict(theirs.state_dict())  # a torch.nn checkpoint loads unchanged
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs64 = copy.deepcopy(theirs).double()  # the reference: the same updates in float64
    x = torch.randn(shape)
    for mode in ("train", "eval", "train"):
        for m in (ours, theirs, theirs64):
            m.train(mode == "train")
        assert_parity(ours(x), theirs(x), theirs64(x.double()), what=f"{mode} output")
        assert_parity(ours(x[0]), theirs(x[0]), theirs64(x[0].double()), what=f"{mode} output, no batch dim")
        for k, v in theirs.state_dict().items():
            if v.is_floating_point():
                assert_parity(ours.state_dict()[k], v, theirs64.state_dict()[k], what=f"{mode} {k}")
            else:  # num_batches_tracked
                assert torch.equal(ours.state_dict()[k], v), k


def test_module_activation_residual_and_repr():
    layer = fastgen.nn.InstanceNorm2d(4, activation="leaky_relu", negative_slope=0.2)
    twin = R.InstanceNorm2d(4, activation="leaky_relu", negative_slope=0.2)
    x, res = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    twin64, x64, res64 = copy.deepcopy(twin).double(), x.double(), res.double()
    assert_parity(layer(x, res), twin(x, res), twin64(x64, res64), what="batched")
    assert_parity(layer(x[0], res[0]), twin(x[0], res[0]), twin64(x64[0], res64[0]), what="no batch dim")
    assert "activation='leaky_relu', negative_slope=0.2" in repr(layer)
    assert repr(fastgen.nn.InstanceNorm2d(4)) == repr(torch.nn.InstanceNorm2d(4))
    assert fastgen.nn.InstanceNorm2d(4).state_dict().keys() == torch.nn.InstanceNorm2d(4).state_dict().keys()
    with pytest.raises(ValueError, match="expected input's size at dim=1 to match num_features"):
        fastgen.nn.InstanceNorm2d(3, affine=True)(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastgen.nn.InstanceNorm2d(3)(x)
    assert any("does not match num_features" in str(w.message) for w in caught)


def test_zero_size_batch_and_channels():
    for shape in ((0, 3, 4, 5), (2, 0, 4, 5)):
        x = torch.randn(shape, requires_grad=True)
        out = F.instance_norm(x, activation="relu")
        assert out.shape == shape
        out.sum().backward()
        assert x.grad.shape == shape
    cl = torch.randn(0, 3, 4, 5).to(memory_format=torch.channels_last)
    assert F.instance_norm(cl).shape == cl.shape


# --------------------------------------------------------------------------- torch.library, compile


def test_opcheck():
    x, w, b, res, grad = _inputs((2, 5, 3, 4), torch.float32)
    cl = _channels_last(x)
    rm, rv = torch.randn(5), torch.rand(5) + 0.5
    for xx in (x, cl):
        for args in (
            (w, b, None, None, res, True, 1e-5, "relu", 0.0),
            (None, None, None, None, None, True, 1e-3, "leaky_relu", 0.2),
            (w, None, rm, rv, None, False, 1e-5, "none", 0.0),
        ):
            torch.library.opcheck(ops.instance_norm, (xx.clone().requires_grad_(), *args))
        _, mean, var = ops.instance_norm(xx, w, b, None, None, None, True, 1e-5, "relu", 0.0)
        for mask in ([True, True, True], [True, False, False], [False, True, True]):
            torch.library.opcheck(
                ops.instance_norm_backward, (grad, xx, w, b, mean, var, True, 1e-5, "leaky_relu", 0.1, mask)
            )
        torch.library.opcheck(
            ops.instance_norm_backward, (grad, xx, w, b, mean, var, False, 1e-5, "relu", 0.0, [True, True, True])
        )


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    norm = fastgen.nn.InstanceNorm2d(6, affine=True, track_running_stats=True, activation="relu")
    eager = R.InstanceNorm2d(6, affine=True, track_running_stats=True, activation="relu")
    eager.load_state_dict(norm.state_dict())

    def step(layer, x, res):
        y = layer(x, res)
        z = (
            F.instance_norm(y, activation="leaky_relu", negative_slope=0.2)
            if layer is norm
            else R.instance_norm(y, activation="leaky_relu", negative_slope=0.2)
        )
        return (z * z).sum()

    compiled = torch.compile(step, fullgraph=True)
    eager64 = copy.deepcopy(eager).double()  # the reference: the eager step in float64
    for x in (torch.randn(3, 6, 5, 7), _channels_last(torch.randn(3, 6, 5, 7))):
        x.requires_grad_()
        res = torch.randn(3, 6, 5, 7)
        out = compiled(norm, x, res)
        grads = torch.autograd.grad(out, (x, norm.weight, norm.bias))
        ref = step(eager, x, res)
        ref_grads = torch.autograd.grad(ref, (x, eager.weight, eager.bias))
        x64 = x.detach().double().requires_grad_()
        ref64 = step(eager64, x64, res.double())
        ref64_grads = torch.autograd.grad(ref64, (x64, eager64.weight, eager64.bias))
        assert_parity(out.detach(), ref.detach(), ref64.detach(), what="compiled output")
        # At the network's gradient scale: the affine bias before the affine-free norm has a nearly
        # cancelling true gradient, and both sides return rounding noise of the x gradient's size.
        scale = max(g.abs().max().item() for g in ref64_grads)
        assert_parity_tree(grads, ref_grads, ref64_grads, what="compiled grads", scale=max(scale, 1.0))
        assert_parity(norm.running_mean, eager.running_mean, eager64.running_mean, what="running_mean")
        assert_parity(norm.running_var, eager.running_var, eager64.running_var, what="running_var")


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, exc=(ValueError, TypeError, RuntimeError), **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_spatial_size_one_in_training_is_torchs_error():
    x = torch.randn(2, 3, 1, 1)
    with pytest.raises(
        ValueError,
        match=r"Expected more than 1 spatial element when training, got input size "
        r"torch.Size\(\[2, 3, 1, 1\]\)",
    ):
        TF.instance_norm(x)
    _raises(
        r"Expected more than 1 spatial element when training, got input size torch.Size\(\[2, 3, 1, 1\]\)",
        F.instance_norm,
        x,
        exc=ValueError,
    )
    _raises(r"Expected more than 1 spatial element when training", fastgen.nn.InstanceNorm2d(3), x, exc=ValueError)
    # in eval with running stats it is fine, as in torch
    norm = fastgen.nn.InstanceNorm2d(3, track_running_stats=True).eval()
    torch.testing.assert_close(norm(x), torch.nn.InstanceNorm2d(3, track_running_stats=True).eval()(x))


def test_bad_inputs_name_the_argument():
    x = torch.randn(2, 3, 4, 5)
    _raises(
        r"fastgen.instance_norm: weight must have shape \(3,\) \(the input's channels\), got \(4,\)",
        F.instance_norm,
        x,
        weight=torch.ones(4),
    )
    _raises(r"bias must have shape \(3,\)", F.instance_norm, x, bias=torch.ones(3, 1))
    _raises(r"running_mean must have shape \(3,\)", F.instance_norm, x, torch.zeros(2), torch.ones(3))
    _raises(
        r"residual must have the shape of input \(2, 3, 4, 5\), got \(2, 3, 4, 4\)",
        F.instance_norm,
        x,
        residual=torch.randn(2, 3, 4, 4),
    )
    _raises(r"residual must have the dtype of input", F.instance_norm, x, residual=x.double())
    _raises(r"input must be a floating-point tensor .* got torch.int64", F.instance_norm, torch.ones(2, 3, 4).long())
    _raises(r"input must have at least 2 dimensions", F.instance_norm, torch.randn(5))
    _raises(r"activation must be None, 'relu' or 'leaky_relu', got 'gelu'", F.instance_norm, x, activation="gelu")
    _raises(
        r"running_mean and running_var must be given when use_input_stats is False",
        F.instance_norm,
        x,
        use_input_stats=False,
    )
    _raises(r"input must be a torch.Tensor", F.instance_norm, [1.0])
    _raises(r"activation must be None, 'relu' or 'leaky_relu'", fastgen.nn.InstanceNorm2d, 3, activation="tanh")


def test_bad_inputs_to_the_ops_directly():
    x = torch.randn(2, 3, 4, 5)
    _raises(
        r"fastgen.instance_norm: weight must have shape \(3,\)",
        ops.instance_norm,
        x,
        torch.ones(2),
        None,
        None,
        None,
        None,
        True,
        1e-5,
        "none",
        0.0,
    )
    _raises(
        r"fastgen.instance_norm: activation must be 'none', 'relu' or 'leaky_relu', got 'elu'",
        ops.instance_norm,
        x,
        None,
        None,
        None,
        None,
        None,
        True,
        1e-5,
        "elu",
        0.0,
    )
    _raises(
        r"fastgen.instance_norm: running_mean and running_var must be given",
        ops.instance_norm,
        x,
        None,
        None,
        None,
        None,
        None,
        False,
        1e-5,
        "none",
        0.0,
    )
    _raises(
        r"fastgen.instance_norm: residual must have the shape of input",
        ops.instance_norm,
        x,
        None,
        None,
        None,
        None,
        x[0],
        True,
        1e-5,
        "none",
        0.0,
    )
    _raises(
        r"fastgen.instance_norm: Expected more than 1 spatial element",
        ops.instance_norm,
        x[..., :1, :1],
        None,
        None,
        None,
        None,
        None,
        True,
        1e-5,
        "none",
        0.0,
        exc=ValueError,
    )
    _, mean, var = ops.instance_norm(x, None, None, None, None, None, True, 1e-5, "none", 0.0)
    _raises(
        r"fastgen.instance_norm_backward: grad_out must have the shape of input",
        ops.instance_norm_backward,
        x[:1],
        x,
        None,
        None,
        mean,
        var,
        True,
        1e-5,
        "none",
        0.0,
        [True, False, False],
    )
    _raises(
        r"fastgen.instance_norm_backward: mean must have shape \(2, 3\)",
        ops.instance_norm_backward,
        x,
        x,
        None,
        None,
        mean[:1],
        var,
        True,
        1e-5,
        "none",
        0.0,
        [True, False, False],
    )
    _raises(
        r"fastgen.instance_norm_backward: var must be Double for Double input, got Float",
        ops.instance_norm_backward,
        x.double(),
        x.double(),
        None,
        None,
        mean.double(),
        var,
        True,
        1e-5,
        "none",
        0.0,
        [True, False, False],
    )
    _raises(
        r"fastgen.instance_norm_backward: output_mask\[1\] \(grad_weight\) needs weight",
        ops.instance_norm_backward,
        x,
        x,
        None,
        None,
        mean,
        var,
        True,
        1e-5,
        "none",
        0.0,
        [True, True, False],
    )
    # The fake impls make the same checks (what torch.compile and meta tensors see).
    meta = torch.empty(2, 3, 4, 5, device="meta")
    _raises(
        r"fastgen.instance_norm: weight must have shape \(3,\)",
        ops.instance_norm,
        meta,
        torch.empty(2, device="meta"),
        None,
        None,
        None,
        None,
        True,
        1e-5,
        "none",
        0.0,
    )
    _raises(
        r"fastgen.instance_norm: residual must have the dtype of input",
        ops.instance_norm,
        meta,
        None,
        None,
        None,
        None,
        meta.double(),
        True,
        1e-5,
        "none",
        0.0,
    )
    out = ops.instance_norm(
        meta.to(memory_format=torch.channels_last), None, None, None, None, None, True, 1e-5, "relu", 0.0
    )
    assert out[0].is_contiguous(memory_format=torch.channels_last) and out[1].shape == (2, 3)


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("instance_norm")  # the ops' CUDA functions: checks + Triton launchers


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,layout", [((2, 3, 5, 7), "contiguous"), ((1, 37, 3, 4), "channels_last"), ((1, 4, 3, 2, 3), "channels_last")]
)
def test_triton_forward_and_backward_match_cpu(dtype, shape, layout):
    kernels = _triton()
    x, w, b, res, grad = _inputs(shape, dtype)
    w, b = w.float(), b.float()
    x, res, grad = (_layout(t, layout) for t in (x, res, grad))
    rm, rv = torch.randn(shape[1]), torch.rand(shape[1]) + 0.5
    up = lambda t: t.double() if isinstance(t, torch.Tensor) else t  # noqa: E731  (the CPU kernel's float64 run)
    for args, mask in (
        ((w, b, None, None, res, True, 1e-5, "leaky_relu", 0.2), [True, True, True]),
        ((None, None, None, None, None, True, 1e-5, "relu", 0.0), [True, False, False]),
        ((w, None, rm, rv, None, False, 1e-5, "relu", 0.0), [True, True, False]),
    ):
        what = f"{dtype} {shape} {layout} {args[7]} use_stats={args[5]}"
        got = kernels.instance_norm(x, *args)
        want = ops.instance_norm(x, *args)
        ref = ops.instance_norm(x.double(), *map(up, args))
        for a, e in zip(got, want):
            assert a.shape == e.shape and a.dtype == e.dtype and a.stride() == e.stride()
        assert_kernels_agree(got, want, ref, what=what)
        weight, bias = args[0], args[1]
        use_stats, eps, act, slope = args[5:]
        got = kernels.instance_norm_backward(grad, x, weight, bias, want[1], want[2], use_stats, eps, act, slope, mask)
        ref = ops.instance_norm_backward(
            grad.double(), x.double(), up(weight), up(bias), ref[1], ref[2], use_stats, eps, act, slope, mask
        )
        want = ops.instance_norm_backward(grad, x, weight, bias, want[1], want[2], use_stats, eps, act, slope, mask)
        for a, e in zip(got, want):
            assert a.shape == e.shape and a.dtype == e.dtype and a.stride() == e.stride()
        assert_kernels_agree(got, want, ref, what=f"backward {what}")


def test_triton_empty_inputs():
    kernels = _triton()
    for shape in ((0, 3, 4, 5), (2, 3, 0)):
        out, mean, var = kernels.instance_norm(
            torch.randn(shape), None, None, None, None, None, True, 1e-5, "none", 0.0
        )
        ref = ops.instance_norm(torch.randn(shape), None, None, None, None, None, True, 1e-5, "none", 0.0)
        assert out.shape == ref[0].shape and mean.shape == ref[1].shape
        torch.testing.assert_close(mean, ref[1], equal_nan=True)


def test_triton_operands_with_other_size_one_strides():
    kernels = _triton()
    x, _, _, _, grad = _inputs((1, 3, 4, 5), torch.float32)
    wide = torch.cat([grad, grad], 1)[:, 3:]  # contiguous, another batch stride
    _, mean, var = ops.instance_norm(x, None, None, None, None, None, True, 1e-5, "relu", 0.0)
    got = kernels.instance_norm_backward(wide, x, None, None, mean, var, True, 1e-5, "relu", 0.0, [True, False, False])
    want = ops.instance_norm_backward(grad, x, None, None, mean, var, True, 1e-5, "relu", 0.0, [True, False, False])
    x64, grad64 = x.double(), grad.double()  # the CPU kernel's float64 run is the reference
    _, mean64, var64 = ops.instance_norm(x64, None, None, None, None, None, True, 1e-5, "relu", 0.0)
    ref = ops.instance_norm_backward(
        grad64, x64, None, None, mean64, var64, True, 1e-5, "relu", 0.0, [True, False, False]
    )
    assert_kernels_agree(got[0], want[0], ref[0], what="grad_x")
    out = kernels.instance_norm(x, None, None, None, None, wide, True, 1e-5, "relu", 0.0)[0]
    assert_kernels_agree(
        out,
        ops.instance_norm(x, None, None, None, None, grad, True, 1e-5, "relu", 0.0)[0],
        ops.instance_norm(x64, None, None, None, None, grad64, True, 1e-5, "relu", 0.0)[0],
        what="out",
    )


def test_two_element_planes_keep_the_precision_of_the_mean():
    """Planes of two close values (2.43 and 2.42, say): x - round(mean) loses most of the digits
    of the deviation: the output's error was up to 18x eager's, in 3 of these 1000 seeds,
    before the mean was kept as hi + lo. (The gradient's residual is in the README.)"""
    for seed in range(1000):
        x, w, b, res, grad = _inputs((4, 2, 2), torch.float32, seed=seed)
        fast = _run(F.instance_norm, x, w, b, res, grad)[0]
        eager = _run(R.instance_norm, x, w, b, res, grad)[0]
        ref = _run(R.instance_norm, *(t.double() for t in (x, w, b, res, grad)))[0]
        assert_parity(fast, eager, ref, what=f"out, seed {seed}")


# --- hardening (issue 12): regressions -------------------------------------------------------


def test_zero_size_spatial_dim_gives_zero_param_grads():
    # Eager: w.grad = b.grad = 0; fastgen gave NaN (0 * rstd of no elements).
    x = torch.randn(2, 3, 0, 4, requires_grad=True)
    w = torch.ones(3, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    F.instance_norm(x, weight=w, bias=b).sum().backward()
    w2 = w.detach().clone().requires_grad_(True)
    b2 = b.detach().clone().requires_grad_(True)
    R.instance_norm(x.detach(), weight=w2, bias=b2).sum().backward()
    assert torch.equal(w.grad, w2.grad) and torch.equal(b.grad, b2.grad)
    assert torch.equal(w.grad, torch.zeros(3))


@pytest.mark.parametrize("where", ["input", "running_mean"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_eval_relu_with_infinite_input_grad_is_eager(where, activation, channels_last):
    # y = -inf, relu gives 0 and a 0 gradient; fastgen's backward multiplied x - mean = -inf by a
    # zero coefficient and gave NaN.
    x = torch.randn(2, 3, 4, 4)
    rm, rv = torch.zeros(3), torch.ones(3)
    if where == "input":
        x[0, 1, 2, 3] = -float("inf")
    else:
        rm[1] = float("inf")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xf = x.clone().requires_grad_(True)
    xe = x.clone().requires_grad_(True)
    kw = dict(use_input_stats=False, activation=activation)
    out = F.instance_norm(xf, rm.clone(), rv.clone(), **kw)
    ref = R.instance_norm(xe, rm.clone(), rv.clone(), **kw)
    g = torch.randn_like(ref)
    out.backward(g)
    ref.backward(g)
    assert torch.equal(torch.isnan(out), torch.isnan(ref))
    assert torch.equal(torch.isnan(xf.grad), torch.isnan(xe.grad)), "NaN gradient where eager has none"
    torch.testing.assert_close(xf.grad, xe.grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("magnitude", [1e19, 1e30, 1e37])
@pytest.mark.parametrize("channels_last", [False, True])
def test_huge_planes_match_float64(dtype, magnitude, channels_last):
    # (x - mean)^2 overflows float32 above ~1.8e19: fastgen gave NaN or 0 there (eager gives 0).
    # The normalized output is of order 1 and float64 computes it: fastgen must match float64.
    if dtype == torch.float16:
        magnitude = 1e4  # float16's range ends at 65504
    g = torch.Generator().manual_seed(12)
    x = (torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64) * magnitude).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.rand(3, generator=g) + 0.5
    xf = x.clone().requires_grad_(True)
    wf = w.clone().requires_grad_(True)
    out = F.instance_norm(xf, weight=wf)
    x64 = x.double().requires_grad_(True)
    w64 = w.double().requires_grad_(True)
    ref = R.instance_norm(x64, weight=w64)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=4 * torch.finfo(dtype).eps * 4)
    gout = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    out.backward(gout.to(dtype))
    ref.backward(gout)
    # Gradients of order 1 / magnitude: compare relative to that scale.
    scale = x64.grad.abs().max().item()
    assert torch.isfinite(xf.grad).all()
    assert (xf.grad.double() - x64.grad).abs().max().item() <= 64 * torch.finfo(dtype).eps * scale
    torch.testing.assert_close(wf.grad.double(), w64.grad, rtol=64 * torch.finfo(dtype).eps, atol=1e-6)
