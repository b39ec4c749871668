"""Siamese losses (triplet margin, contrastive, batch-hard triplet): fake impls, autograd (double
backward included) and the CUDA (Triton) kernels for the fastgen::triplet_margin_loss,
fastgen::contrastive_loss and fastgen::batch_hard_triplet_loss ops and their backward ops.

The math lives in csrc/triplet.cpp. Double backward differentiates the torch-op formulations
below (torch's own F.triplet_margin_loss for the triplet margin loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgen._checks import check_same_device
from fastgen._autograd import register_autograd

from fastgen._double_backward import vjp_of_vjp

_ops = torch.ops.fastgen

INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)
REDUCTIONS = ("none", "mean", "sum")


def _check_embeddings(op, name, x) -> None:
    torch._check(x.dim() == 2, lambda: f"fastgen.{op}: {name} must be 2-D (batch, embedding_size), got {x.dim()}-D")
    torch._check(x.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {x.dtype}")


def _check_like(op, name, t, ref_name, ref) -> None:
    torch._check(t.shape == ref.shape, lambda: f"fastgen.{op}: {name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
    torch._check(t.dtype == ref.dtype, lambda: f"fastgen.{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    torch._check(t.device == ref.device, lambda: f"fastgen.{op}: {name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def _check_reduction(op, reduction) -> None:
    torch._check(reduction in REDUCTIONS, lambda: f"fastgen.{op}: reduction must be 'none', 'mean' or 'sum', got '{reduction}'")


def _check_grad(op, grad, batch, reduction) -> None:
    if reduction == "none":
        torch._check(grad.shape == (batch,), lambda: f"fastgen.{op}: grad must have shape ({batch},) for reduction='none', got {tuple(grad.shape)}")
    else:
        torch._check(grad.numel() == 1, lambda: f"fastgen.{op}: grad must be a scalar for a reduced loss, got shape {tuple(grad.shape)}")


def check_triplet(op, anchor, positive, negative, p, reduction) -> None:
    _check_embeddings(op, "anchor", anchor)
    _check_like(op, "positive", positive, "anchor", anchor)
    _check_like(op, "negative", negative, "anchor", anchor)
    torch._check(p > 0, lambda: f"fastgen.{op}: p must be positive, got {p}")
    _check_reduction(op, reduction)


def check_contrastive(op, x1, x2, y, reduction) -> None:
    _check_embeddings(op, "x1", x1)
    _check_like(op, "x2", x2, "x1", x1)
    torch._check(y.dim() == 1 and y.shape[0] == x1.shape[0], lambda: f"fastgen.{op}: y must have shape ({x1.shape[0]},), got {tuple(y.shape)}")
    torch._check(y.device == x1.device, lambda: f"fastgen.{op}: y must be on the device of x1 ({x1.device}), got {y.device}")
    _check_reduction(op, reduction)


def check_batch_hard(op, embeddings, labels, reduction) -> None:
    _check_embeddings(op, "embeddings", embeddings)
    torch._check(labels.dim() == 1 and labels.shape[0] == embeddings.shape[0], lambda: f"fastgen.{op}: labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}")
    torch._check(labels.dtype in INTEGER_DTYPES, lambda: f"fastgen.{op}: labels must be an integer tensor, got {labels.dtype}")
    torch._check(labels.device == embeddings.device, lambda: f"fastgen.{op}: labels must be on the device of embeddings ({embeddings.device}), got {labels.device}")
    _check_reduction(op, reduction)


def _check_margin(op, margin) -> None:
    # As torch.nn.functional.triplet_margin_loss (NaN passes, giving NaN).
    torch._check_value(not margin <= 0, lambda: f"fastgen.{op}: margin must be greater than 0, got {margin}")


def _loss_like(x, reduction):
    return x.new_empty((x.shape[0],) if reduction == "none" else ())


def _grad_like(x):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("fastgen::triplet_margin_loss")
def _triplet_fake(anchor, positive, negative, margin, p, eps, swap, reduction):
    check_triplet("triplet_margin_loss", anchor, positive, negative, p, reduction)
    _check_margin("triplet_margin_loss", margin)
    return _loss_like(anchor, reduction)


@torch.library.register_fake("fastgen::triplet_margin_loss_backward")
def _triplet_backward_fake(grad, anchor, positive, negative, margin, p, eps, swap, reduction):
    op = "triplet_margin_loss_backward"
    check_triplet(op, anchor, positive, negative, p, reduction)
    _check_margin(op, margin)
    _check_grad(op, grad, anchor.shape[0], reduction)
    check_same_device(op, "anchor", anchor, grad=grad)
    return _grad_like(anchor), _grad_like(anchor), _grad_like(anchor)


@torch.library.register_fake("fastgen::contrastive_loss")
def _contrastive_fake(x1, x2, y, margin, eps, reduction):
    check_contrastive("contrastive_loss", x1, x2, y, reduction)
    return _loss_like(x1, reduction)


@torch.library.register_fake("fastgen::contrastive_loss_backward")
def _contrastive_backward_fake(grad, x1, x2, y, margin, eps, reduction, y_grad):
    op = "contrastive_loss_backward"
    check_contrastive(op, x1, x2, y, reduction)
    _check_grad(op, grad, x1.shape[0], reduction)
    check_same_device(op, "x1", x1, grad=grad)
    torch._check(not y_grad or y.dtype.is_floating_point, lambda: f"fastgen.{op}: y_grad=True needs a floating-point y, got {y.dtype}")
    grad_y = y.new_empty((y.shape[0],)) if y_grad else x1.new_empty((0,))
    return _grad_like(x1), _grad_like(x1), grad_y


@torch.library.register_fake("fastgen::batch_hard_triplet_loss")
def _batch_hard_fake(embeddings, labels, margin, squared, reduction):
    check_batch_hard("batch_hard_triplet_loss", embeddings, labels, reduction)
    index = embeddings.new_empty((embeddings.shape[0],), dtype=torch.int64)
    return _loss_like(embeddings, reduction), index, torch.empty_like(index)


@torch.library.register_fake("fastgen::batch_hard_triplet_loss_backward")
def _batch_hard_backward_fake(grad, embeddings, positive, negative, margin, squared, reduction):
    op = "batch_hard_triplet_loss_backward"
    _check_embeddings(op, "embeddings", embeddings)
    _check_reduction(op, reduction)
    _check_grad(op, grad, embeddings.shape[0], reduction)
    torch._check_type(positive.dtype == torch.int64 and negative.dtype == torch.int64, lambda: f"fastgen.{op}: positive and negative must be int64 index tensors, got {positive.dtype} and {negative.dtype}")
    torch._check_value(positive.shape == (embeddings.shape[0],) and negative.shape == (embeddings.shape[0],), lambda: f"fastgen.{op}: positive and negative must have shape ({embeddings.shape[0]},), got {tuple(positive.shape)} and {tuple(negative.shape)}")
    check_same_device(op, "embeddings", embeddings, grad=grad, positive=positive, negative=negative)
    return _grad_like(embeddings)


# ---------------------------------------------------------------------------------------
# the ops in torch ops (double backward)


def _reduce(per_row, reduction, count=None):
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    return per_row.sum() / (per_row.shape[0] if count is None else count)


def torch_contrastive_loss(x1, x2, y, margin, eps, reduction):
    d = F.pairwise_distance(x1, x2, eps=eps)
    y = y.to(d.dtype)
    return _reduce(y * d.pow(2) + (1 - y) * F.relu(margin - d).pow(2), reduction)


def _safe_distance(d2, squared):
    if squared:
        return d2
    positive = d2 > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, d2, 1.0)), 0.0)


def torch_batch_hard_triplet_loss(embeddings, positive, negative, margin, squared, reduction):
    """The loss for given hardest positives / negatives (the op's second and third outputs)."""
    valid = (positive >= 0) & (negative >= 0)
    rows_p, rows_n = embeddings[positive.clamp_min(0)], embeddings[negative.clamp_min(0)]
    compute = torch.promote_types(embeddings.dtype, torch.float32)
    d_ap = _safe_distance((embeddings - rows_p).to(compute).pow(2).sum(1), squared)
    d_an = _safe_distance((embeddings - rows_n).to(compute).pow(2).sum(1), squared)
    per_row = torch.where(valid, F.relu(d_ap - d_an + margin), 0.0).to(embeddings.dtype)
    return _reduce(per_row, reduction, valid.sum().clamp_min(1))


# ---------------------------------------------------------------------------------------
# autograd


def _setup_triplet(ctx, inputs, output):
    ctx.params = inputs[3:]
    ctx.save_for_backward(*inputs[:3])


def _triplet_backward(ctx, grad):
    grads = _ops.triplet_margin_loss_backward(grad, *ctx.saved_tensors, *ctx.params)
    return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad)) + (None,) * 5


def _setup_triplet_bwd(ctx, inputs, output):
    ctx.params = inputs[4:]
    ctx.save_for_backward(*inputs[:4])


def _triplet_bwd_bwd(ctx, gg_a, gg_p, gg_n):
    grad, anchor, positive, negative = ctx.saved_tensors
    margin, p, eps, swap, reduction = ctx.params
    d_cots, d_prim = vjp_of_vjp(
        lambda a, pos, neg: (F.triplet_margin_loss(a, pos, neg, margin=margin, p=p, eps=eps, swap=swap,
                                                   reduction=reduction),),
        (anchor, positive, negative), (grad,), (gg_a, gg_p, gg_n))
    return (d_cots[0], *d_prim) + (None,) * 5


def _setup_contrastive(ctx, inputs, output):
    x1, x2, y = inputs[:3]
    ctx.params = inputs[3:]
    ctx.save_for_backward(x1, x2, y)


def _contrastive_backward(ctx, grad):
    x1, x2, y = ctx.saved_tensors
    y_grad = bool(ctx.needs_input_grad[2])
    g1, g2, gy = _ops.contrastive_loss_backward(grad, x1, x2, y, *ctx.params, y_grad)
    need = ctx.needs_input_grad
    return (g1 if need[0] else None, g2 if need[1] else None, gy if y_grad else None) + (None,) * 3


def _setup_contrastive_bwd(ctx, inputs, output):
    ctx.params = inputs[4:7]
    ctx.y_grad = inputs[7]
    ctx.save_for_backward(*inputs[:4])


def _contrastive_bwd_bwd(ctx, gg_1, gg_2, gg_y):
    grad, x1, x2, y = ctx.saved_tensors
    margin, eps, reduction = ctx.params
    floating_y = y.dtype.is_floating_point
    d_cots, d_prim = vjp_of_vjp(
        lambda a, b, t: (torch_contrastive_loss(a, b, t, margin, eps, reduction),),
        (x1, x2, y), (grad,), (gg_1, gg_2, gg_y if ctx.y_grad else None), differentiable=(True, True, floating_y))
    return (d_cots[0], d_prim[0], d_prim[1], d_prim[2] if floating_y else None) + (None,) * 4


def _setup_batch_hard(ctx, inputs, output):
    embeddings = inputs[0]
    _, positive, negative = output
    ctx.params = inputs[2:]
    ctx.mark_non_differentiable(positive, negative)
    ctx.save_for_backward(embeddings, positive, negative)


def _batch_hard_backward(ctx, grad, _gp, _gn):
    embeddings, positive, negative = ctx.saved_tensors
    return _ops.batch_hard_triplet_loss_backward(grad, embeddings, positive, negative, *ctx.params), None, None, None, None


def _setup_batch_hard_bwd(ctx, inputs, output):
    ctx.params = inputs[4:]
    ctx.save_for_backward(*inputs[:4])


def _batch_hard_bwd_bwd(ctx, gg):
    grad, embeddings, positive, negative = ctx.saved_tensors
    margin, squared, reduction = ctx.params
    d_cots, d_prim = vjp_of_vjp(
        lambda e: (torch_batch_hard_triplet_loss(e, positive, negative, margin, squared, reduction),),
        (embeddings,), (grad,), (gg,))
    return d_cots[0], d_prim[0], None, None, None, None, None


register_autograd("fastgen::triplet_margin_loss", _triplet_backward, setup_context=_setup_triplet)
register_autograd("fastgen::triplet_margin_loss_backward", _triplet_bwd_bwd,
                                setup_context=_setup_triplet_bwd)
register_autograd("fastgen::contrastive_loss", _contrastive_backward, setup_context=_setup_contrastive)
register_autograd("fastgen::contrastive_loss_backward", _contrastive_bwd_bwd,
                                setup_context=_setup_contrastive_bwd)
register_autograd("fastgen::batch_hard_triplet_loss", _batch_hard_backward,
                                setup_context=_setup_batch_hard)
register_autograd("fastgen::batch_hard_triplet_loss_backward", _batch_hard_bwd_bwd,
                                setup_context=_setup_batch_hard_bwd)


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


def _cuda(name):
    def kernel(*args):
        from fastgen.triton_kernels import triplet as kernels

        return getattr(kernels, name)(*args)

    torch.library.register_kernel(f"fastgen::{name}", "cuda", kernel)


for _name in ("triplet_margin_loss", "triplet_margin_loss_backward", "contrastive_loss", "contrastive_loss_backward",
              "batch_hard_triplet_loss", "batch_hard_triplet_loss_backward"):
    _cuda(_name)
