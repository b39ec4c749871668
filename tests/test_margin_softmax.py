"""fastgen.functional.margin_cross_entropy, the margin loss modules and fastgen::margin_softmax."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgen
from fastgen import functional as F
from fastgen.bench import timing
from fastgen.ops.margin_softmax import torch_margin_softmax
from fastgen.reference import margin_softmax as R
from tests._tolerance import FLOOR_ULPS, assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
REDUCTIONS = ("none", "mean", "sum")
MARGINS = {
    "arcface": dict(m1=1.0, m2=0.5, m3=0.0),
    "cosface": dict(m1=1.0, m2=0.0, m3=0.35),
    "sphereface": dict(m1=4.0, m2=0.0, m3=0.0),
    "combined": dict(m1=1.2, m2=0.3, m3=0.1),
    "easy": dict(m1=1.0, m2=0.5, m3=0.0, easy_margin=True),
}
# InsightFace's current rule (straight_through): its gradient is not the forward's derivative, so
# these stay out of the gradchecks; arcface_torch's own code is compared in tests/test_conventions.py.
STRAIGHT_THROUGH = {
    "arcface_st": dict(m1=1.0, m2=0.5, m3=0.0, straight_through=True),
    "combined_st": dict(m1=1.2, m2=0.3, m3=0.1, straight_through=True),
    "easy_st": dict(m1=1.0, m2=0.5, m3=0.0, easy_margin=True, straight_through=True),
}
# Odd shapes: a single class, a batch of one, sizes that are not whole vectors.
SHAPES = [(5, 7, 3), (1, 1, 4), (9, 130, 17)]


def _inputs(batch, classes, emb, *, ignore=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, emb, generator=gen, dtype=torch.float64)
    w = torch.randn(classes, emb, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    if ignore and batch > 2:
        labels[1] = -100
    return x, w, labels


def _run(fn, x, w, labels, dtype, upstream, **kwargs):
    x = x.to(dtype).requires_grad_()
    w = w.to(dtype).requires_grad_()
    loss = fn(x, w, labels, **kwargs)
    gx, gw = torch.autograd.grad(loss, (x, w), upstream.to(dtype))
    return loss.detach(), gx, gw


def _check_parity(x, w, labels, dtype, **kwargs):
    batch = x.shape[0]
    upstream = (
        torch.randn(batch, dtype=torch.float64)
        if kwargs.get("reduction") == "none"
        else torch.tensor(1.5, dtype=torch.float64)
    )
    fast = _run(F.margin_cross_entropy, x, w, labels, dtype, upstream, **kwargs)
    eager = _run(R.margin_cross_entropy, x, w, labels, dtype, upstream, **kwargs)
    ref = _run(R.margin_cross_entropy, x, w, labels, torch.float64, upstream, **kwargs)
    # Logits are s * cos, so rounding noise scales with s (see tests/_tolerance.py).
    floor_ulps = max(FLOOR_ULPS, kwargs.get("s", 64.0))
    for name, f, e, r in zip(("loss", "grad_embeddings", "grad_weight"), fast, eager, ref):
        assert_parity(f, e, r, floor_ulps=floor_ulps, what=f"{name} {dtype} {tuple(x.shape)}x{w.shape[0]} {kwargs}")


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("margin", list(MARGINS))
def test_forward_and_gradients_match_reference(shape, dtype, margin):
    x, w, labels = _inputs(*shape)
    for reduction in REDUCTIONS:
        _check_parity(x, w, labels, dtype, s=30.0, reduction=reduction, **MARGINS[margin])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("margin", list(STRAIGHT_THROUGH))
def test_straight_through_matches_reference(dtype, margin):
    for shape in SHAPES:
        x, w, labels = _inputs(*shape)
        x[0] = -w[labels[0]]  # theta = pi: no fallback
        for reduction in REDUCTIONS:
            _check_parity(x, w, labels, dtype, s=30.0, reduction=reduction, **STRAIGHT_THROUGH[margin])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_more_classes_than_one_chunk(dtype):
    x, w, labels = _inputs(6, 2100, 33)
    labels[0] = 2099
    for margin in ("arcface", "sphereface"):
        _check_parity(x, w, labels, dtype, s=64.0, reduction="none", **MARGINS[margin])


@pytest.mark.parametrize("s", [1.0, 64.0])
def test_default_scale_and_margins(s):
    x, w, labels = _inputs(16, 300, 32)
    _check_parity(x, w, labels, torch.float32, s=s)


def test_float64_is_exact_to_rounding():
    x, w, labels = _inputs(13, 257, 19)
    for margin in (*MARGINS.values(), *STRAIGHT_THROUGH.values()):
        fast = _run(F.margin_cross_entropy, x, w, labels, torch.float64, torch.tensor(1.0), **margin)
        ref = _run(R.margin_cross_entropy, x, w, labels, torch.float64, torch.tensor(1.0), **margin)
        for a, b in zip(fast, ref):
            torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_many_chunks_and_blocks():
    # More classes than one chunk (2048) times the 16 blocks: block partials are merged.
    x, w, labels = _inputs(4, 40_000, 8)
    labels[0] = 39_999
    labels[2] = 0
    _check_parity(x, w, labels, torch.float32, s=64.0, reduction="none")


def test_result_does_not_depend_on_thread_count():
    x, w, labels = _inputs(8, 20_000, 16)
    x, w = x.float().requires_grad_(), w.float().requires_grad_()
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            loss = F.margin_cross_entropy(x, w, labels)
            results.append((loss, *torch.autograd.grad(loss, (x, w))))
    finally:
        torch.set_num_threads(before)
    # Blocks of classes are combined in a fixed order. The one GEMM with a long reduction
    # (grad of the normalized embeddings, K = a chunk of classes) may round differently when
    # MKL runs outside a parallel region (one thread) than inside it: allow that rounding,
    # measured against the float64 run (logits are s * cos, s = 64: see _check_parity).
    ref_gx = _run(R.margin_cross_entropy, x.detach(), w.detach(), labels, torch.float64, torch.tensor(1.0))[1]
    for other in results[1:]:
        assert torch.equal(results[0][0], other[0]) and torch.equal(results[0][2], other[2])
        assert_parity(other[1], results[0][1], ref_gx, floor_ulps=64.0, what="grad_embeddings, threads")
    for a, b in zip(results[1], results[2]):
        assert torch.equal(a, b)


def test_the_op_matches_its_torch_formulation():
    # torch_margin_softmax is what double backward differentiates: it must be the op.
    x, w, labels = _inputs(7, 50, 6)
    for margin in (*MARGINS.values(), *STRAIGHT_THROUGH.values()):
        args = (
            0,
            50,
            20.0,
            margin["m1"],
            margin["m2"],
            margin["m3"],
            margin.get("easy_margin", False),
            -100,
            margin.get("straight_through", False),
        )
        lse, target, _ = ops.margin_softmax(x, w, labels, *args)
        t_lse, t_target = torch_margin_softmax(x, w, labels, *args)
        torch.testing.assert_close(lse, t_lse, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(target, t_target, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_cosines_at_plus_and_minus_one_have_finite_gradients(dtype):
    # Embeddings equal to their class center (cos = 1) and opposite to it (cos = -1, where
    # theta + m > pi and ArcFace falls back to cos - m sin m).
    w = torch.randn(6, 8, dtype=torch.float64)
    x = torch.stack([w[0], -w[1], w[2] * 3, -w[3] * 0.5])
    labels = torch.tensor([0, 1, 2, 3])
    for margin in MARGINS.values():
        loss, gx, gw = _run(F.margin_cross_entropy, x, w, labels, dtype, torch.tensor(1.0), s=16.0, **margin)
        assert torch.isfinite(loss) and torch.isfinite(gx).all() and torch.isfinite(gw).all()
        if dtype in (torch.float32, torch.float64):
            _, rgx, rgw = _run(R.margin_cross_entropy, x, w, labels, torch.float64, torch.tensor(1.0), s=16.0, **margin)
        if dtype == torch.float32:
            # Ill-conditioned here: one ulp of a cosine at the clamp 1 - 1e-7 moves theta by
            # 1 / sqrt(2e-7) ulps, and the logit by s = 16 times that, on whichever side it rounds
            # (the float64 reference clamps at float64's epsilon instead).
            floor_ulps = 16.0 / math.sqrt(2e-7)
            _, egx, egw = _run(R.margin_cross_entropy, x, w, labels, dtype, torch.tensor(1.0), s=16.0, **margin)
            assert_parity(gx, egx, rgx, floor_ulps=floor_ulps, what=f"grad_embeddings {margin}")
            assert_parity(gw, egw, rgw, floor_ulps=floor_ulps, what=f"grad_weight {margin}")
        elif dtype == torch.float64:
            torch.testing.assert_close(gx, rgx, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(gw, rgw, rtol=1e-4, atol=1e-4)


def test_arcface_fallback_past_pi():
    # theta + m2 > pi: the target logit is s * (cos - m2 sin m2), continuous in the gradient.
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    theta = torch.tensor([3.0, 1.0], dtype=torch.float64)  # 3.0 + 0.5 > pi, 1.0 + 0.5 < pi
    x = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    lse, target, cos_t = ops.margin_softmax(x, w, torch.tensor([0, 0]), 0, 2, 2.0, 1.0, 0.5, 0.0, False, -100)
    torch.testing.assert_close(cos_t, torch.cos(theta))
    assert abs(target[0].item() - 2 * (math.cos(3.0) - 0.5 * math.sin(0.5))) < 1e-12
    assert abs(target[1].item() - 2 * math.cos(1.5)) < 1e-12


def test_sphereface_extension_is_monotonic():
    theta = torch.linspace(0.01, math.pi - 0.01, 200, dtype=torch.float64)
    x = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    w = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    _, target, _ = ops.margin_softmax(x, w, torch.zeros(200, dtype=torch.long), 0, 1, 1.0, 4.0, 0.0, 0.0, False, -100)
    assert (target.diff() < 0).all()
    torch.testing.assert_close(target[-1], torch.tensor(-7.0, dtype=torch.float64), atol=1e-2, rtol=0)


def test_large_logits_do_not_overflow():
    x, w, labels = _inputs(4, 100, 8, ignore=False)
    w[:50] = x[0]  # many classes at cos = 1 with s = 1000
    loss, gx, gw = _run(F.margin_cross_entropy, x, w, labels, torch.float32, torch.tensor(1.0), s=1000.0)
    assert torch.isfinite(loss) and torch.isfinite(gx).all() and torch.isfinite(gw).all()
    ref = _run(R.margin_cross_entropy, x, w, labels, torch.float64, torch.tensor(1.0), s=1000.0)
    eager = _run(R.margin_cross_entropy, x, w, labels, torch.float32, torch.tensor(1.0), s=1000.0)
    assert_parity(loss, eager[0], ref[0], floor_ulps=1000.0, what="loss, s = 1000")  # logits: 1000 cos


def test_nan_propagates_to_its_row():
    x, w, labels = _inputs(3, 10, 4, ignore=False)
    x[1, 2] = float("nan")
    loss = F.margin_cross_entropy(x.float(), w.float(), labels, reduction="none")
    assert torch.isnan(loss[1]) and torch.isfinite(loss[[0, 2]]).all()


def test_zero_embeddings_and_zero_class_centers():
    # F.normalize divides by max(norm, eps): zero rows give zero cosines, finite gradients.
    x, w, labels = _inputs(3, 5, 4, ignore=False)
    x[0] = 0
    w[labels[1]] = 0
    ref64 = _run(R.margin_cross_entropy, x, w, labels, torch.float64, torch.tensor(1.0), s=8.0, m2=0.2)
    for dtype in (torch.float32, torch.float64):
        fast = _run(F.margin_cross_entropy, x, w, labels, dtype, torch.tensor(1.0), s=8.0, m2=0.2)
        ref = _run(R.margin_cross_entropy, x, w, labels, dtype, torch.tensor(1.0), s=8.0, m2=0.2)
        if dtype == torch.float32:
            assert_parity_tree(fast, ref, ref64, what="zero rows")
        else:
            for a, b in zip(fast, ref):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("margin", list(MARGINS))
def test_gradcheck_and_gradgradcheck(margin):
    x, w, labels = _inputs(4, 6, 5)
    x.requires_grad_()
    w.requires_grad_()
    for reduction in ("mean", "none"):

        def fn(e, wt, reduction=reduction):
            return F.margin_cross_entropy(e, wt, labels, s=4.0, reduction=reduction, **MARGINS[margin])

        assert torch.autograd.gradcheck(fn, (x, w))
        assert torch.autograd.gradgradcheck(fn, (x, w))


def test_gradcheck_of_the_op_outputs_and_a_shard():
    # Both outputs of the op, for a shard [2, 6) of 9 classes (some targets elsewhere).
    x, w, _ = _inputs(5, 4, 3)
    labels = torch.tensor([0, 3, 5, 8, -100])
    x.requires_grad_()
    w.requires_grad_()
    fn = lambda e, wt: ops.margin_softmax(e, wt, labels, 2, 9, 3.0, 1.0, 0.4, 0.1, False, -100)[:2]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


def test_third_order_gradient_matches_reference():
    x, w, labels = _inputs(3, 4, 3, ignore=False)
    x.requires_grad_()
    w.requires_grad_()

    def third(fn):
        loss = fn(x, w, labels, s=3.0)
        g = torch.autograd.grad(loss, x, create_graph=True)[0]
        g2 = torch.autograd.grad((g * g).sum(), w, create_graph=True)[0]
        return torch.autograd.grad(g2.sum(), (x, w))

    for a, b in zip(third(F.margin_cross_entropy), third(R.margin_cross_entropy)):
        torch.testing.assert_close(a, b)


# --------------------------------------------------------------------------- layouts and sizes


def test_non_contiguous_inputs():
    x, w, labels = _inputs(6, 20, 8)
    xt = x.float().t().contiguous().t()  # column-major
    wt = torch.stack([w.float(), torch.zeros_like(w.float())], 2).flatten(1)[:, ::2]  # strided
    assert not xt.is_contiguous() and not wt.is_contiguous()
    labels32 = labels.int()
    got = _run(F.margin_cross_entropy, xt, wt, labels32, torch.float32, torch.tensor(1.0))
    want = _run(R.margin_cross_entropy, x, w, labels, torch.float32, torch.tensor(1.0))
    ref = _run(R.margin_cross_entropy, x, w, labels, torch.float64, torch.tensor(1.0))
    assert_parity_tree(got, want, ref, floor_ulps=64.0, what="non-contiguous")  # logits: 64 cos


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_size_batch(reduction):
    x = torch.zeros(0, 4, requires_grad=True)
    w = torch.randn(3, 4, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long)
    loss = F.margin_cross_entropy(x, w, labels, reduction=reduction)
    ref = R.margin_cross_entropy(x, w, labels, reduction=reduction)
    assert loss.shape == ref.shape
    torch.testing.assert_close(loss, ref, equal_nan=True)  # mean of nothing is NaN, as in torch
    gx, gw = torch.autograd.grad(loss.nan_to_num().sum(), (x, w))
    assert gx.shape == (0, 4) and torch.equal(gw, torch.zeros(3, 4))


def test_every_label_ignored():
    x, w, _ = _inputs(3, 5, 4)
    labels = torch.full((3,), -1)
    loss, gx, gw = _run(F.margin_cross_entropy, x, w, labels, torch.float32, torch.tensor(1.0), ignore_index=-1)
    assert torch.isnan(loss)
    assert torch.equal(gx, torch.zeros_like(gx)) and torch.equal(gw, torch.zeros_like(gw))
    total = F.margin_cross_entropy(x.float(), w.float(), labels, ignore_index=-1, reduction="sum")
    assert total.item() == 0


def test_peak_memory_has_no_batch_by_classes_tensor():
    batch, classes, emb = 64, 50_000, 8
    x, w, labels = _inputs(batch, classes, emb)
    x, w = x.float().requires_grad_(), w.float().requires_grad_()

    def step():
        return torch.autograd.grad(F.margin_cross_entropy(x, w, labels), (x, w))

    step()
    full = batch * classes * 4
    peak = timing.peak_memory_bytes(step)
    # grad_weight (1.6 MB) and per-thread chunk buffers, far below one (B, C) float tensor (12.8 MB).
    assert peak < full / 2, f"peak {peak} bytes vs a (B, C) tensor of {full}"
    eager_peak = timing.peak_memory_bytes(lambda: torch.autograd.grad(R.margin_cross_entropy(x, w, labels), (x, w)))
    assert peak < eager_peak / 4


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 9),
    classes=st.integers(1, 300),
    emb=st.integers(1, 40),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    margin=st.sampled_from(list(MARGINS)),
    reduction=st.sampled_from(REDUCTIONS),
    s=st.sampled_from([1.0, 16.0, 64.0]),
)
def test_random_shapes_dtypes_and_margins(batch, classes, emb, dtype, margin, reduction, s):
    x, w, labels = _inputs(batch, classes, emb, seed=batch * 1000 + classes)
    _check_parity(x, w, labels, dtype, s=s, reduction=reduction, **MARGINS[margin])


# --------------------------------------------------------------------------- torch.library


def test_opcheck():
    x, w, labels = _inputs(5, 9, 6)
    x, w = x.float().requires_grad_(), w.float().requires_grad_()
    args = (0, 9, 16.0, 1.0, 0.5, 0.0, False, -100)
    torch.library.opcheck(ops.margin_softmax, (x, w, labels, *args))
    torch.library.opcheck(ops.margin_softmax, (x.bfloat16(), w.bfloat16(), labels.int(), *args))
    torch.library.opcheck(ops.margin_softmax, (x, w[3:7], labels, 3, 9, 16.0, 1.0, 0.0, 0.35, True, -100))
    lse, _, cos_t = ops.margin_softmax(x.detach(), w.detach(), labels, *args)
    grads = (torch.randn(5), torch.randn(5))
    for mask in ([True, True], [True, False], [False, True]):
        torch.library.opcheck(
            ops.margin_softmax_backward, (*grads, x.detach(), w.detach(), labels, lse, cos_t, *args, mask)
        )
    torch.library.opcheck(
        ops.margin_softmax_backward, (None, grads[1], x.detach(), w.detach(), labels, lse, cos_t, *args, [True, True])
    )
    # straight_through (the schema's trailing argument)
    torch.library.opcheck(ops.margin_softmax, (x, w, labels, *args, True))
    torch.library.opcheck(
        ops.margin_softmax_backward, (*grads, x.detach(), w.detach(), labels, lse, cos_t, *args, [True, True], True)
    )


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    x, w, labels = _inputs(6, 40, 8)
    x, w = x.float().requires_grad_(), w.float().requires_grad_()

    def step(e, wt, y):
        return F.margin_cross_entropy(e, wt, y) + F.margin_cross_entropy(e * 2, wt, y, m2=0.0, m3=0.3, reduction="sum")

    compiled = torch.compile(step, fullgraph=True)
    out = compiled(x, w, labels)
    grads = torch.autograd.grad(out, (x, w))
    ref = step(x, w, labels)
    ref_grads = torch.autograd.grad(ref, (x, w))
    x64, w64 = (t.detach().double().requires_grad_() for t in (x, w))
    ref64 = step(x64, w64, labels)
    assert_parity(out.detach(), ref.detach(), ref64.detach(), floor_ulps=64.0, what="compiled output")
    assert_parity_tree(grads, ref_grads, torch.autograd.grad(ref64, (x64, w64)), floor_ulps=64.0, what="compiled grads")


# --------------------------------------------------------------------------- modules


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("ArcFaceLoss", dict(s=30.0, m=0.4)),
        ("CosFaceLoss", dict()),
        ("SphereFaceLoss", dict(m=3)),
        ("CombinedMarginLoss", dict(m1=1.1, m2=0.2, m3=0.1, reduction="sum")),
    ],
)
def test_modules_match_reference_modules(name, kwargs):
    torch.manual_seed(3)
    fast = getattr(fastgen.nn, name)(16, 50, **kwargs)
    eager = getattr(R, name)(16, 50, **kwargs)
    assert fast.weight.shape == (50, 16)
    eager.load_state_dict(fast.state_dict())
    x, _, labels = _inputs(7, 50, 16)
    ref = copy.deepcopy(eager).double()
    x = x.float().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    a, b, r = fast(x, labels), eager(x, labels), ref(x64, labels)
    ga = torch.autograd.grad(a, (x, fast.weight))
    gb = torch.autograd.grad(b, (x, eager.weight))
    gr = torch.autograd.grad(r, (x64, ref.weight))
    floor_ulps = max(FLOOR_ULPS, fast.s)  # logits are s * cos (see _check_parity)
    for what, p, q, t in zip(("loss", "grad_embeddings", "grad_weight"), (a, *ga), (b, *gb), (r, *gr)):
        assert_parity(p, q, t, floor_ulps=floor_ulps, what=f"{name} {what}")
    assert_parity(fast.cosine(x).detach(), eager.cosine(x).detach(), ref.cosine(x64).detach(), what=f"{name} cosine")
    assert "num_classes=50" in repr(fast)


def test_module_margins():
    assert (fastgen.nn.ArcFaceLoss(4, 3).m2, fastgen.nn.ArcFaceLoss(4, 3).s) == (0.5, 64.0)
    assert fastgen.nn.CosFaceLoss(4, 3).m3 == 0.35
    assert fastgen.nn.SphereFaceLoss(4, 3).m1 == 4.0
    c = fastgen.nn.CombinedMarginLoss(4, 3, m1=1.0, m2=0.3, m3=0.2)
    assert (c.m1, c.m2, c.m3) == (1.0, 0.3, 0.2)


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    x, w, labels = torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 1, 4])
    fn = F.margin_cross_entropy
    _raises(
        r"labels must be class indices in \[0, 5\) or ignore_index \(-100\), got 5", fn, x, w, torch.tensor([0, 5, 1])
    )
    _raises(r"labels must be class indices .* got -1", fn, x, w, torch.tensor([0, -1, 1]))
    _raises(r"labels must be an integer tensor, got torch.float32", fn, x, w, labels.float())
    _raises(r"labels must be an integer tensor, got torch.bool", fn, x, w, labels.bool())
    _raises(r"labels must have shape \(3,\), got \(2,\)", fn, x, w, labels[:2])
    _raises(r"weight must have embedding size 4 \(the embeddings' size\), got 6", fn, x, torch.randn(5, 6), labels)
    _raises(r"weight must have at least one class, got 0", fn, x, torch.randn(0, 4), labels)
    _raises(r"weight must have the dtype of embeddings \(torch.float32\), got torch.float64", fn, x, w.double(), labels)
    _raises(r"embeddings must be a floating-point tensor .* got torch.int64", fn, x.long(), w, labels)
    _raises(r"embeddings must be 2-D", fn, x[0], w, labels)
    _raises(r"weight must be 2-D", fn, x, w[0], labels)
    _raises(r"reduction must be one of .* got 'avg'", fn, x, w, labels, reduction="avg")
    _raises(r"s must be a positive finite scale, got 0", fn, x, w, labels, s=0)
    _raises(r"labels must be a torch.Tensor", fn, x, w, [0, 1, 2])
    _raises(r"reduction must be one of", fastgen.nn.ArcFaceLoss, 4, 3, reduction="x")
    _raises(r"num_classes must be a positive int, got 0", fastgen.nn.CosFaceLoss, 4, 0)


def test_bad_inputs_to_the_ops_directly():
    x, w, labels = torch.randn(3, 4), torch.randn(5, 4), torch.tensor([0, 1, 4])
    args = (0, 5, 64.0, 1.0, 0.5, 0.0, False, -100)
    _raises(
        r"fastgen.margin_softmax: labels must be class indices in \[0, 5\)",
        ops.margin_softmax,
        x,
        w,
        torch.tensor([0, 9, 1]),
        *args,
    )
    _raises(
        r"fastgen.margin_softmax: labels must be an integer tensor, got Float",
        ops.margin_softmax,
        x,
        w,
        labels.float(),
        *args,
    )
    _raises(
        r"fastgen.margin_softmax: weight must have embedding size 4",
        ops.margin_softmax,
        x,
        torch.randn(5, 3),
        labels,
        *args,
    )
    _raises(
        r"fastgen.margin_softmax: weight must have at least one class",
        ops.margin_softmax,
        x,
        torch.randn(0, 4),
        labels,
        *args,
    )
    _raises(
        r"fastgen.margin_softmax: the weight's classes .* must lie in \[0, num_classes\)",
        ops.margin_softmax,
        x,
        w,
        labels,
        3,
        5,
        *args[2:],
    )
    lse, _, cos_t = ops.margin_softmax(x, w, labels, *args)
    _raises(
        r"fastgen.margin_softmax_backward: grad_lse must have shape \(3,\)",
        ops.margin_softmax_backward,
        torch.randn(2),
        None,
        x,
        w,
        labels,
        lse,
        cos_t,
        *args,
        [True, True],
    )
    # The fake impls make the same checks (what torch.compile and meta tensors see).
    meta = lambda *shape: torch.empty(*shape, device="meta")  # noqa: E731
    labels_meta = torch.zeros(3, dtype=torch.long, device="meta")
    _raises(
        r"fastgen.margin_softmax: weight must have embedding size 4",
        ops.margin_softmax,
        meta(3, 4),
        meta(5, 3),
        labels_meta,
        *args,
    )
    _raises(
        r"fastgen.margin_softmax: labels must be an integer tensor",
        ops.margin_softmax,
        meta(3, 4),
        meta(5, 4),
        meta(3),
        *args,
    )
    _raises(
        r"fastgen.margin_softmax: weight must have at least one class",
        ops.margin_softmax,
        meta(3, 4),
        meta(0, 4),
        labels_meta,
        *args,
    )
    lse_meta, _, cos_meta = ops.margin_softmax(meta(3, 4), meta(5, 4), labels_meta, *args)
    assert lse_meta.shape == (3,) and lse_meta.dtype == torch.float64  # lse is float64 (csrc/margin_softmax.cpp)


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("margin_softmax")  # the ops' CUDA functions: checks + Triton launchers


@pytest.mark.parametrize(
    "dtype,margin",
    [
        (torch.float32, "arcface"),
        (torch.float32, "sphereface"),
        (torch.float32, "easy"),
        (torch.float64, "combined"),
        (torch.bfloat16, "cosface"),
        (torch.float32, "arcface_st"),
        (torch.float64, "combined_st"),
    ],
)
def test_triton_forward_and_backward_match_cpu(dtype, margin):
    kernels = _triton()
    x, w, _ = _inputs(35, 90, 40)
    x, w = x.to(dtype), w.to(dtype)
    labels = torch.tensor([5, -100, 89, 0] + [i * 7 % 90 for i in range(31)])
    m = {**MARGINS, **STRAIGHT_THROUGH}[margin]
    x64 = x.double()  # the CPU kernel's float64 run is the reference
    for class_start, shard in ((0, w), (40, w[40:75])):  # the whole weight and a shard of it
        args = (class_start, 90, 16.0, m["m1"], m["m2"], m["m3"], m.get("easy_margin", False), -100)
        st = m.get("straight_through", False)
        what = f"{dtype} {margin} classes from {class_start}"
        got = kernels.margin_softmax(x, shard, labels, *args, st)
        want = ops.margin_softmax(x, shard, labels, *args, st)
        ref = ops.margin_softmax(x64, shard.double(), labels, *args, st)
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.dtype == b.dtype
        assert_kernels_agree(got, want, ref, what=what, floor_ulps=16.0)  # logits: 16 cos (see _check_parity)
        lse, _, cos_t = want
        grads = (torch.randn(35).to(lse.dtype), torch.randn(35).to(lse.dtype))
        for mask in ([True, True], [False, True]):
            got = kernels.margin_softmax_backward(*grads, x, shard, labels, lse, cos_t, *args, mask, st)
            want = ops.margin_softmax_backward(*grads, x, shard, labels, lse, cos_t, *args, mask, st)
            ref_grads = [g.double() for g in grads]
            ref_b = ops.margin_softmax_backward(
                *ref_grads, x64, shard.double(), labels, ref[0], ref[2], *args, mask, st
            )
            for a, b in zip(got, want):
                assert a.shape == b.shape and a.dtype == b.dtype
            assert_kernels_agree(got, want, ref_b, what=f"backward {what} {mask}", floor_ulps=16.0)


def test_triton_empty_batch_and_bad_labels():
    kernels = _triton()
    w = torch.randn(5, 4)
    lse, target, cos_t = kernels.margin_softmax(
        torch.zeros(0, 4), w, torch.zeros(0, dtype=torch.long), 0, 5, 64.0, 1.0, 0.5, 0.0, False, -100
    )
    assert lse.shape == (0,)
    gx, gw = kernels.margin_softmax_backward(
        lse,
        None,
        torch.zeros(0, 4),
        w,
        torch.zeros(0, dtype=torch.long),
        lse,
        cos_t,
        0,
        5,
        64.0,
        1.0,
        0.5,
        0.0,
        False,
        -100,
        [True, True],
    )
    assert gx.shape == (0, 4) and torch.equal(gw, torch.zeros(5, 4))
    _raises(
        r"fastgen.margin_softmax: labels must be class indices in \[0, 5\)",
        kernels.margin_softmax,
        torch.randn(2, 4),
        w,
        torch.tensor([0, 7]),
        0,
        5,
        64.0,
        1.0,
        0.5,
        0.0,
        False,
        -100,
    )


# --------------------------------------------------------------------------- benchmark case


def test_bench_case_reports_the_bare_matmuls(tmp_path, capsys):
    import json

    from fastgen.bench.__main__ import main

    assert (
        main(["--ops", "margin_ce", "--shapes", "8x300x16", "--repeats", "3", "--no-compile", "--out", str(tmp_path)])
        == 0
    )
    table = capsys.readouterr().out
    assert "baseline 'bare matmuls' for margin_ce 8x300x16 fwd+bwd:" in table
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    for r in rows:
        assert set(r["impls"]) == {"fastgen", "eager"}
        bare = r["baselines"]["bare matmuls"]
        assert bare["median_s"] > 0 and bare["peak_bytes"] >= 0
        assert bare["ratios"]["fastgen"] == r["impls"]["fastgen"]["median_s"] / bare["median_s"]
