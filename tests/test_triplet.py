"""fastgen.functional.triplet_margin_loss / contrastive_loss / batch_hard_triplet_loss, the
modules, and their ops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import fastgen
from fastgen import functional as F
from fastgen.reference import triplet as R
from tests._tolerance import assert_kernels_agree, assert_parity, assert_parity_tree

ops = torch.ops.fastgen
REDUCTIONS = ("none", "mean", "sum")
LOW_PRECISION = [torch.float32, torch.bfloat16, torch.float16]


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _upstream(reduction, batch):
    return torch.randn(batch, dtype=torch.float64) if reduction == "none" else torch.tensor(1.3, dtype=torch.float64)


def _grads(fn, tensors, dtype, upstream, diff=None, **kwargs):
    """(output, grads of the floating inputs) of fn(*tensors, **kwargs) in dtype."""
    diff = diff if diff is not None else [True] * len(tensors)
    ins = [t.to(dtype).requires_grad_() if d else t for t, d in zip(tensors, diff)]
    out = fn(*ins, **kwargs)
    grads = torch.autograd.grad(out, [t for t, d in zip(ins, diff) if d], upstream.to(dtype))
    return (out.detach(), *grads)


def _parity(fast_fn, eager_fn, tensors, dtype, reduction, what, diff=None, **kwargs):
    batch = tensors[0].shape[0] if tensors[0].dim() == 2 else 1
    up = _upstream(reduction, batch) if tensors[0].dim() == 2 else torch.tensor(0.7, dtype=torch.float64)
    fast = _grads(fast_fn, tensors, dtype, up, diff, reduction=reduction, **kwargs)
    eager = _grads(eager_fn, tensors, dtype, up, diff, reduction=reduction, **kwargs)
    ref = _grads(
        eager_fn,
        [t.double() if t.dtype.is_floating_point else t for t in tensors],
        torch.float64,
        up,
        diff,
        reduction=reduction,
        **kwargs,
    )
    for i, (f, e, r) in enumerate(zip(fast, eager, ref)):
        assert_parity(f, e, r, what=f"{what} output {i} {dtype} {kwargs} {reduction}")


# --------------------------------------------------------------------------- triplet margin loss


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_margin_loss_matches_torch(dtype, p, swap):
    a, pos, neg = _randn(9, 37, seed=1), _randn(9, 37, seed=2), _randn(9, 37, seed=3)
    for reduction in REDUCTIONS:
        _parity(
            F.triplet_margin_loss,
            R.triplet_margin_loss,
            (a, pos, neg),
            dtype,
            reduction,
            "triplet",
            margin=2.0,
            p=p,
            swap=swap,
        )


def test_triplet_margin_loss_unbatched_and_legacy_arguments():
    a, pos, neg = _randn(11, seed=1), _randn(11, seed=2), _randn(11, seed=3)
    for reduction in REDUCTIONS:
        _parity(
            F.triplet_margin_loss,
            R.triplet_margin_loss,
            (a, pos, neg),
            torch.float32,
            reduction,
            "unbatched",
            margin=5.0,
        )
    a2, pos2, neg2 = (t.float() for t in (_randn(4, 6, seed=1), _randn(4, 6, seed=2), _randn(4, 6, seed=3)))
    assert_parity(
        F.triplet_margin_loss(a2, pos2, neg2, margin=3.0, size_average=False),
        TF.triplet_margin_loss(a2, pos2, neg2, margin=3.0, reduction="sum"),
        TF.triplet_margin_loss(a2.double(), pos2.double(), neg2.double(), margin=3.0, reduction="sum"),
        what="size_average=False",
    )


def test_triplet_inactive_rows_have_zero_gradient():
    a = torch.zeros(2, 3, requires_grad=True)
    pos = torch.zeros(2, 3)
    neg = torch.tensor([[10.0, 0, 0], [0.1, 0, 0]])
    loss = F.triplet_margin_loss(a, pos, neg, margin=1.0, reduction="none")
    g = torch.autograd.grad(loss.sum(), a)[0]
    assert loss[0] == 0 and torch.equal(g[0], torch.zeros(3)) and g[1].abs().sum() > 0


# --------------------------------------------------------------------------- contrastive loss


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("y_dtype", [torch.float32, torch.int64, torch.bool])
def test_contrastive_loss_matches_reference(dtype, y_dtype):
    x1, x2 = _randn(12, 19, seed=4), _randn(12, 19, seed=5) * 0.3
    x2[:4] = x1[:4]  # identical pairs: d = eps-distance, safe gradients
    y = (torch.arange(12) % 2).to(y_dtype)
    for reduction in REDUCTIONS:
        _parity(
            F.contrastive_loss,
            R.contrastive_loss,
            (x1, x2, y),
            dtype,
            reduction,
            "contrastive",
            diff=[True, True, False],
            margin=4.0,
        )


def test_contrastive_loss_gradient_of_soft_labels():
    x1, x2 = _randn(6, 5, seed=4), _randn(6, 5, seed=5)
    y = torch.rand(6, dtype=torch.float64)
    _parity(F.contrastive_loss, R.contrastive_loss, (x1, x2, y), torch.float32, "mean", "soft y", margin=3.0)


def test_contrastive_identical_points_have_finite_gradients():
    x = torch.randn(4, 8)
    for y in (torch.ones(4), torch.zeros(4)):
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        loss = F.contrastive_loss(x1, x2, y, eps=0.0)
        g1, g2 = torch.autograd.grad(loss, (x1, x2))
        assert torch.isfinite(loss) and torch.isfinite(g1).all() and torch.isfinite(g2).all()


# --------------------------------------------------------------------------- batch-hard triplet


def _pk_labels(batch, k=4):
    return torch.arange(batch) // k


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("squared", [False, True])
def test_batch_hard_matches_reference(dtype, squared):
    e = _randn(24, 33, seed=6)
    labels = _pk_labels(24)
    for reduction in REDUCTIONS:
        _parity(
            F.batch_hard_triplet_loss,
            R.batch_hard_triplet_loss,
            (e, labels),
            dtype,
            reduction,
            "batch hard",
            diff=[True, False],
            margin=0.5 if squared else 3.0,
            squared=squared,
        )


def test_batch_hard_mining_picks_the_hardest():
    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 0.5]], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1])
    _, positive, negative = ops.batch_hard_triplet_loss(e, labels, 0.3, False, "none")
    assert positive.tolist() == [2, 2, 0, 4, 3]
    assert negative.tolist() == [4, 4, 4, 0, 0]


def test_batch_hard_anchors_without_positive_or_negative():
    e = _randn(5, 4, seed=7).float()
    only_one = torch.tensor([0, 1, 1, 2, 2])  # anchor 0 has no positive
    for reduction in REDUCTIONS:
        _parity(
            F.batch_hard_triplet_loss,
            R.batch_hard_triplet_loss,
            (e.double(), only_one),
            torch.float32,
            reduction,
            "missing positive",
            diff=[True, False],
            margin=9.0,
        )
    same = torch.zeros(5, dtype=torch.long)  # no negatives at all: loss 0, gradient 0
    x = e.clone().requires_grad_()
    loss = F.batch_hard_triplet_loss(x, same)
    assert loss.item() == 0 and torch.equal(torch.autograd.grad(loss, x)[0], torch.zeros_like(x))


@pytest.mark.parametrize("squared", [False, True])
def test_batch_hard_identical_points_give_no_nan(squared):
    e = torch.randn(6, 5)
    e[1] = e[0]  # duplicate of the same class: distance 0
    e[3] = e[2]  # duplicate across classes: negative at distance 0
    labels = torch.tensor([0, 0, 1, 0, 1, 1])
    x = e.clone().requires_grad_()
    loss = F.batch_hard_triplet_loss(x, labels, margin=1.0, squared=squared)
    g = torch.autograd.grad(loss, x)[0]
    assert torch.isfinite(loss) and torch.isfinite(g).all()
    ref_x = e.double().requires_grad_()
    ref = R.batch_hard_triplet_loss(ref_x, labels, margin=1.0, squared=squared)
    eager_x = e.clone().requires_grad_()
    eager = R.batch_hard_triplet_loss(eager_x, labels, margin=1.0, squared=squared)
    assert_parity(loss.detach(), eager.detach(), ref.detach(), what="loss")
    assert_parity(g, torch.autograd.grad(eager, eager_x)[0], torch.autograd.grad(ref, ref_x)[0], what="grad")


# --------------------------------------------------------------------------- gradcheck


def test_gradcheck_and_gradgradcheck():
    a, pos, neg = (_randn(4, 5, seed=s).requires_grad_() for s in (1, 2, 3))
    for p, swap, reduction in ((2.0, False, "mean"), (2.0, True, "none"), (3.0, False, "sum"), (1.0, True, "mean")):
        fn = lambda x, y, z: F.triplet_margin_loss(x, y, z, margin=3.0, p=p, swap=swap, reduction=reduction)  # noqa
        assert torch.autograd.gradcheck(fn, (a, pos, neg))
        if p != 1.0:  # |x| has no second derivative at 0; elsewhere it is 0 (checked for p=2, 3)
            assert torch.autograd.gradgradcheck(fn, (a, pos, neg))
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64, requires_grad=True)
    for reduction in REDUCTIONS:
        fn = lambda x, z, t: F.contrastive_loss(x, z, t, margin=5.0, reduction=reduction)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (a, neg, y))
        assert torch.autograd.gradgradcheck(fn, (a, neg, y))
    e = _randn(8, 3, seed=9).requires_grad_()
    labels = _pk_labels(8, 3)
    for squared in (False, True):
        for reduction in REDUCTIONS:
            fn = lambda x: F.batch_hard_triplet_loss(x, labels, margin=2.0, squared=squared, reduction=reduction)  # noqa
            assert torch.autograd.gradcheck(fn, (e,))
            assert torch.autograd.gradgradcheck(fn, (e,))


# --------------------------------------------------------------------------- layouts and sizes


def test_non_contiguous_inputs():
    a = _randn(7, 6, seed=1).float().t().contiguous().t()
    pos = torch.stack([_randn(7, 6, seed=2).float(), torch.zeros(7, 6)], 2).flatten(1)[:, ::2]
    neg = _randn(7, 6, seed=3).float()
    assert not a.is_contiguous() and not pos.is_contiguous()
    a64, pos64, neg64 = a.double(), pos.double(), neg.double()
    assert_parity(
        F.triplet_margin_loss(a, pos, neg, margin=3.0),
        TF.triplet_margin_loss(a, pos, neg, margin=3.0),
        TF.triplet_margin_loss(a64, pos64, neg64, margin=3.0),
        what="triplet",
    )
    y = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])[::1][:7]
    assert_parity(
        F.contrastive_loss(a, pos, y),
        R.contrastive_loss(a, pos, y),
        R.contrastive_loss(a64, pos64, y),
        what="contrastive",
    )
    labels = torch.tensor([0, 1, 0, 1, 2, 2, 0])[None].expand(2, 7)[1]
    assert_parity(
        F.batch_hard_triplet_loss(a, labels, 1.0),
        R.batch_hard_triplet_loss(a, labels, 1.0),
        R.batch_hard_triplet_loss(a64, labels, 1.0),
        what="batch hard",
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_size_batch(reduction):
    x = torch.zeros(0, 4, requires_grad=True)
    labels = torch.zeros(0, dtype=torch.long)
    cases = [
        (F.triplet_margin_loss(x, x, x, reduction=reduction), TF.triplet_margin_loss(x, x, x, reduction=reduction)),
        (F.contrastive_loss(x, x, labels, reduction=reduction), R.contrastive_loss(x, x, labels, reduction=reduction)),
        (
            F.batch_hard_triplet_loss(x, labels, reduction=reduction),
            R.batch_hard_triplet_loss(x, labels, reduction=reduction),
        ),
    ]
    for got, want in cases:
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, equal_nan=True)
        assert torch.autograd.grad(got.nan_to_num().sum(), x)[0].shape == (0, 4)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 12),
    dim=st.integers(1, 40),
    k=st.integers(1, 4),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    reduction=st.sampled_from(REDUCTIONS),
    squared=st.booleans(),
    swap=st.booleans(),
)
def test_random_shapes(batch, dim, k, dtype, reduction, squared, swap):
    seed = batch * 100 + dim
    a, pos, neg = (_randn(batch, dim, seed=seed + i) for i in range(3))
    _parity(F.triplet_margin_loss, R.triplet_margin_loss, (a, pos, neg), dtype, reduction, "triplet", swap=swap)
    y = torch.arange(batch) % 2
    _parity(
        F.contrastive_loss,
        R.contrastive_loss,
        (a, pos, y),
        dtype,
        reduction,
        "contrastive",
        diff=[True, True, False],
        margin=float(dim) ** 0.5,
    )
    _parity(
        F.batch_hard_triplet_loss,
        R.batch_hard_triplet_loss,
        (a, _pk_labels(batch, k)),
        dtype,
        reduction,
        "batch hard",
        diff=[True, False],
        margin=1.0,
        squared=squared,
    )


# --------------------------------------------------------------------------- torch.library


def test_opcheck():
    a, pos, neg = (_randn(5, 7, seed=s).float().requires_grad_() for s in (1, 2, 3))
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2])
    for reduction, g in (("mean", torch.tensor(1.0)), ("none", torch.randn(5))):
        torch.library.opcheck(ops.triplet_margin_loss, (a, pos, neg, 1.0, 2.0, 1e-6, True, reduction))
        torch.library.opcheck(ops.triplet_margin_loss, (a, pos, neg, 1.0, 3.0, 1e-6, False, reduction))
        torch.library.opcheck(
            ops.triplet_margin_loss_backward,
            (g, a.detach(), pos.detach(), neg.detach(), 1.0, 2.0, 1e-6, True, reduction),
        )
        torch.library.opcheck(ops.contrastive_loss, (a, pos, y, 2.0, 1e-6, reduction))
        torch.library.opcheck(ops.contrastive_loss, (a, pos, labels, 2.0, 1e-6, reduction))
        torch.library.opcheck(
            ops.contrastive_loss_backward, (g, a.detach(), pos.detach(), y.detach(), 2.0, 1e-6, reduction, True)
        )
        torch.library.opcheck(ops.batch_hard_triplet_loss, (a, labels, 0.5, False, reduction))
        _, pi, ni = ops.batch_hard_triplet_loss(a.detach(), labels, 0.5, True, reduction)
        torch.library.opcheck(ops.batch_hard_triplet_loss_backward, (g, a.detach(), pi, ni, 0.5, True, reduction))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    a, pos, neg = (_randn(6, 8, seed=s).float().requires_grad_() for s in (1, 2, 3))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])

    def step(x, y, z):
        return (
            F.triplet_margin_loss(x, y, z, margin=2.0)
            + F.contrastive_loss(x, y, labels % 2)
            + F.batch_hard_triplet_loss(torch.cat([x, z]), torch.cat([labels, labels]))
        )

    compiled = torch.compile(step, fullgraph=True)
    out = compiled(a, pos, neg)
    grads = torch.autograd.grad(out, (a, pos, neg))
    ref = step(a, pos, neg)
    inputs64 = [t.detach().double().requires_grad_() for t in (a, pos, neg)]
    ref64 = step(*inputs64)
    assert_parity_tree(
        (out.detach(), *grads),
        (ref.detach(), *torch.autograd.grad(ref, (a, pos, neg))),
        (ref64.detach(), *torch.autograd.grad(ref64, inputs64)),
        what="compiled",
    )


# --------------------------------------------------------------------------- modules


def test_modules():
    a, pos, neg = (_randn(5, 7, seed=s).float() for s in (1, 2, 3))
    a64, pos64, neg64 = a.double(), pos.double(), neg.double()
    fast = fastgen.nn.TripletMarginLoss(margin=2.0, p=1.0, swap=True, reduction="sum")
    eager = torch.nn.TripletMarginLoss(margin=2.0, p=1.0, swap=True, reduction="sum")
    assert_parity(fast(a, pos, neg), eager(a, pos, neg), eager(a64, pos64, neg64), what="TripletMarginLoss")
    assert fastgen.nn.TripletMarginLoss(size_average=False).reduction == "sum"
    y = torch.tensor([1, 0, 1, 1, 0])
    assert_parity(
        fastgen.nn.ContrastiveLoss(margin=3.0)(a, pos, y),
        R.ContrastiveLoss(3.0)(a, pos, y),
        R.ContrastiveLoss(3.0)(a64, pos64, y),
        what="ContrastiveLoss",
    )
    labels = torch.tensor([0, 0, 1, 1, 1])
    assert_parity(
        fastgen.nn.BatchHardTripletLoss(1.0, squared=True)(a, labels),
        R.BatchHardTripletLoss(1.0, squared=True)(a, labels),
        R.BatchHardTripletLoss(1.0, squared=True)(a64, labels),
        what="BatchHardTripletLoss",
    )
    assert "squared=True" in repr(fastgen.nn.BatchHardTripletLoss(squared=True))


# --------------------------------------------------------------------------- bad input


def _raises(match, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        fn(*args, **kwargs)


def test_bad_inputs_name_the_argument():
    x = torch.randn(4, 3)
    _raises(
        r"positive must have the shape of anchor \(4, 3\), got \(4, 2\)", F.triplet_margin_loss, x, torch.randn(4, 2), x
    )
    _raises(r"negative must have the dtype of anchor", F.triplet_margin_loss, x, x, x.double())
    _raises(r"anchor must be 1-D or 2-D", F.triplet_margin_loss, x[None], x[None], x[None])
    _raises(r"p must be positive, got 0", F.triplet_margin_loss, x, x, x, p=0)
    _raises(r"reduction must be one of", F.triplet_margin_loss, x, x, x, reduction="avg")
    _raises(r"x2 must have the shape of x1", F.contrastive_loss, x, x[:2], torch.ones(4))
    _raises(r"y must have shape \(4,\), got \(3,\)", F.contrastive_loss, x, x, torch.ones(3))
    _raises(r"x1 must be a floating-point tensor", F.contrastive_loss, x.long(), x.long(), torch.ones(4))
    _raises(r"labels must be an integer tensor, got torch.float32", F.batch_hard_triplet_loss, x, torch.ones(4))
    _raises(r"labels must have shape \(4,\), got \(5,\)", F.batch_hard_triplet_loss, x, torch.ones(5, dtype=torch.long))
    _raises(r"embeddings must be 2-D", F.batch_hard_triplet_loss, x[0], torch.ones(3, dtype=torch.long))
    _raises(r"reduction must be one of", fastgen.nn.ContrastiveLoss, reduction="x")


def test_bad_inputs_to_the_ops_directly():
    x = torch.randn(4, 3)
    _raises(
        r"fastgen.triplet_margin_loss: positive must have the shape of anchor",
        ops.triplet_margin_loss,
        x,
        torch.randn(3, 3),
        x,
        1.0,
        2.0,
        1e-6,
        False,
        "mean",
    )
    _raises(
        r"fastgen.triplet_margin_loss: p must be positive",
        ops.triplet_margin_loss,
        x,
        x,
        x,
        1.0,
        -1.0,
        1e-6,
        False,
        "mean",
    )
    _raises(
        r"fastgen.contrastive_loss: y must have shape \(4,\)",
        ops.contrastive_loss,
        x,
        x,
        torch.ones(2),
        1.0,
        1e-6,
        "mean",
    )
    _raises(
        r"fastgen.contrastive_loss_backward: y_grad=True needs a floating-point y",
        ops.contrastive_loss_backward,
        torch.tensor(1.0),
        x,
        x,
        torch.ones(4, dtype=torch.long),
        1.0,
        1e-6,
        "mean",
        True,
    )
    _raises(
        r"fastgen.batch_hard_triplet_loss: labels must be an integer tensor",
        ops.batch_hard_triplet_loss,
        x,
        torch.ones(4),
        0.3,
        False,
        "mean",
    )
    _raises(
        r"fastgen.batch_hard_triplet_loss_backward: grad must have shape \(4,\)",
        ops.batch_hard_triplet_loss_backward,
        torch.ones(3),
        x,
        torch.zeros(4, dtype=torch.long),
        torch.zeros(4, dtype=torch.long),
        0.3,
        False,
        "none",
    )
    meta = torch.empty(4, 3, device="meta")
    _raises(
        r"fastgen.triplet_margin_loss: negative must have the shape of anchor",
        ops.triplet_margin_loss,
        meta,
        meta,
        torch.empty(4, 2, device="meta"),
        1.0,
        2.0,
        1e-6,
        False,
        "mean",
    )
    _raises(
        r"fastgen.batch_hard_triplet_loss: labels must be an integer tensor",
        ops.batch_hard_triplet_loss,
        meta,
        torch.empty(4, device="meta"),
        0.3,
        False,
        "mean",
    )


# --------------------------------------------------------------------------- Triton (interpreter)


def _triton():
    pytest.importorskip("triton")
    from fastgen.ops._triton import cuda_functions

    return cuda_functions("triplet")  # the ops' CUDA functions: checks + Triton launchers


def _close(got, want, ref, what):
    """got: the Triton kernel, want: the CPU kernel, ref: the CPU kernel in float64."""
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert_kernels_agree(got, want, ref, what=what)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_triton_triplet_and_contrastive_match_cpu(dtype):
    kernels = _triton()
    a, pos, neg = (_randn(19, 70, seed=s).to(dtype) for s in (1, 2, 3))
    pos[0] = a[0]
    a64, pos64, neg64 = (t.double() for t in (a, pos, neg))
    for p, swap in ((2.0, True), (1.0, False), (math.inf, True), (3.0, False)):
        for reduction, g in (("mean", torch.tensor(0.7)), ("none", torch.randn(19))):
            args = (12.0 if p != math.inf else 2.0, p, 1e-6, swap, reduction)
            what = f"triplet {dtype} p={p} swap={swap} {reduction}"
            _close(
                (kernels.triplet_margin_loss(a, pos, neg, *args),),
                (ops.triplet_margin_loss(a, pos, neg, *args),),
                (ops.triplet_margin_loss(a64, pos64, neg64, *args),),
                what,
            )
            g = g.to(dtype)
            _close(
                kernels.triplet_margin_loss_backward(g, a, pos, neg, *args),
                ops.triplet_margin_loss_backward(g, a, pos, neg, *args),
                ops.triplet_margin_loss_backward(g.double(), a64, pos64, neg64, *args),
                f"backward {what}",
            )
    y = (torch.arange(19) % 2).to(dtype)
    for reduction, g in (("sum", torch.tensor(1.5)), ("none", torch.randn(19))):
        args = (11.0, 1e-6, reduction)
        what = f"contrastive {dtype} {reduction}"
        _close(
            (kernels.contrastive_loss(a, pos, y, *args),),
            (ops.contrastive_loss(a, pos, y, *args),),
            (ops.contrastive_loss(a64, pos64, y.double(), *args),),
            what,
        )
        g = g.to(dtype)
        _close(
            kernels.contrastive_loss_backward(g, a, pos, y, *args, True),
            ops.contrastive_loss_backward(g, a, pos, y, *args, True),
            ops.contrastive_loss_backward(g.double(), a64, pos64, y.double(), *args, True),
            f"backward {what}",
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_triton_batch_hard_matches_cpu(dtype):
    kernels = _triton()
    e = _randn(37, 40, seed=8).to(dtype)
    e[5] = e[4]  # a duplicate
    labels = _pk_labels(37, 3)
    labels[-1] = 99  # an anchor without positives
    for squared in (False, True):
        for reduction, g in (("mean", torch.tensor(1.0)), ("none", torch.randn(37))):
            got = kernels.batch_hard_triplet_loss(e, labels, 0.5, squared, reduction)
            want = ops.batch_hard_triplet_loss(e, labels, 0.5, squared, reduction)
            assert torch.equal(got[1], want[1]) and torch.equal(got[2], want[2])
            what = f"batch hard {dtype} squared={squared} {reduction}"
            ref = ops.batch_hard_triplet_loss(e.double(), labels, 0.5, squared, reduction)
            _close(got[:1], want[:1], ref[:1], what)
            g = g.to(dtype)
            # The float64 gradient for the same hardest positives and negatives.
            _close(
                (kernels.batch_hard_triplet_loss_backward(g, e, want[1], want[2], 0.5, squared, reduction),),
                (ops.batch_hard_triplet_loss_backward(g, e, want[1], want[2], 0.5, squared, reduction),),
                (
                    ops.batch_hard_triplet_loss_backward(
                        g.double(), e.double(), want[1], want[2], 0.5, squared, reduction
                    ),
                ),
                f"backward {what}",
            )


def test_triton_empty_batch():
    kernels = _triton()
    x = torch.zeros(0, 4)
    assert torch.isnan(kernels.triplet_margin_loss(x, x, x, 1.0, 2.0, 1e-6, False, "mean"))
    assert kernels.contrastive_loss(x, x, torch.zeros(0), 1.0, 1e-6, "sum").item() == 0
    loss, pos, neg = kernels.batch_hard_triplet_loss(x, torch.zeros(0, dtype=torch.long), 0.3, False, "mean")
    assert loss.item() == 0 and pos.shape == (0,)


# --- hardening (issue 12): regressions -------------------------------------------------------


def test_triplet_p_must_be_a_number():
    a = torch.randn(3, 4)
    with pytest.raises(TypeError, match="fastgen.triplet_margin_loss: p must be"):
        F.triplet_margin_loss(a, a, a, p="2")


@pytest.mark.parametrize("margin", [0.0, -1.0])
def test_triplet_margin_must_be_positive_as_torch(margin):
    a = torch.randn(3, 4)
    with pytest.raises(ValueError, match="margin"):
        TF.triplet_margin_loss(a, a, a, margin=margin)
    with pytest.raises(ValueError, match="fastgen.triplet_margin_loss: margin"):
        F.triplet_margin_loss(a, a, a, margin=margin)
    with pytest.raises(ValueError, match="fastgen.triplet_margin_loss: margin"):
        torch.ops.fastgen.triplet_margin_loss(a, a, a, margin, 2.0, 1e-6, False, "mean")
