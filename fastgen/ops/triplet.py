"""Siamese losses (triplet margin, contrastive, batch-hard triplet): fake impls and the CUDA (Triton)
kernels for the fastgen::triplet_margin_loss,
fastgen::contrastive_loss and fastgen::batch_hard_triplet_loss ops and their backward ops.

The math lives in csrc/triplet.cpp, the autograd in csrc/autograd/triplet.cpp (double backward
differentiates ATen-op formulations of the losses, at::triplet_margin_loss for the triplet margin loss).
"""

from __future__ import annotations

import torch

from fastgen._checks import INTEGER_DTYPES, acc_dtype, check_op_like, check_op_reduction, check_same_device
from fastgen.ops._triton import register_cuda

_ops = torch.ops.fastgen


def _check_embeddings(op, name, x) -> None:
    torch._check(x.dim() == 2, lambda: f"fastgen.{op}: {name} must be 2-D (batch, embedding_size), got {x.dim()}-D")
    torch._check(
        x.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {x.dtype}"
    )


def _check_grad(op, grad, batch, reduction) -> None:
    if reduction == "none":
        torch._check(
            grad.shape == (batch,),
            lambda: f"fastgen.{op}: grad must have shape ({batch},) for reduction='none', got {tuple(grad.shape)}",
        )
    else:
        torch._check(
            grad.numel() == 1,
            lambda: f"fastgen.{op}: grad must be a scalar for a reduced loss, got shape {tuple(grad.shape)}",
        )


def check_triplet(op, anchor, positive, negative, p, reduction) -> None:
    _check_embeddings(op, "anchor", anchor)
    check_op_like(op, "positive", positive, "anchor", anchor)
    check_op_like(op, "negative", negative, "anchor", anchor)
    torch._check(p > 0, lambda: f"fastgen.{op}: p must be positive, got {p}")
    check_op_reduction(op, reduction)


def check_contrastive(op, x1, x2, y, reduction) -> None:
    _check_embeddings(op, "x1", x1)
    check_op_like(op, "x2", x2, "x1", x1)
    torch._check(
        y.dim() == 1 and y.shape[0] == x1.shape[0],
        lambda: f"fastgen.{op}: y must have shape ({x1.shape[0]},), got {tuple(y.shape)}",
    )
    torch._check(
        y.device == x1.device, lambda: f"fastgen.{op}: y must be on the device of x1 ({x1.device}), got {y.device}"
    )
    check_op_reduction(op, reduction)


def check_batch_hard(op, embeddings, labels, reduction) -> None:
    _check_embeddings(op, "embeddings", embeddings)
    torch._check(
        labels.dim() == 1 and labels.shape[0] == embeddings.shape[0],
        lambda: f"fastgen.{op}: labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}",
    )
    torch._check(
        labels.dtype in INTEGER_DTYPES, lambda: f"fastgen.{op}: labels must be an integer tensor, got {labels.dtype}"
    )
    torch._check(
        labels.device == embeddings.device,
        lambda: f"fastgen.{op}: labels must be on the device of embeddings ({embeddings.device}), got {labels.device}",
    )
    check_op_reduction(op, reduction)


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
    torch._check(
        not y_grad or y.dtype.is_floating_point,
        lambda: f"fastgen.{op}: y_grad=True needs a floating-point y, got {y.dtype}",
    )
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
    check_op_reduction(op, reduction)
    _check_grad(op, grad, embeddings.shape[0], reduction)
    torch._check_type(
        positive.dtype == torch.int64 and negative.dtype == torch.int64,
        lambda: (
            f"fastgen.{op}: positive and negative must be int64 index tensors, got {positive.dtype} "
            f"and {negative.dtype}"
        ),
    )
    torch._check_value(
        positive.shape == (embeddings.shape[0],) and negative.shape == (embeddings.shape[0],),
        lambda: (
            f"fastgen.{op}: positive and negative must have shape ({embeddings.shape[0]},), got "
            f"{tuple(positive.shape)} and {tuple(negative.shape)}"
        ),
    )
    check_same_device(op, "embeddings", embeddings, grad=grad, positive=positive, negative=negative)
    return _grad_like(embeddings)


# ---------------------------------------------------------------------------------------
# CUDA: the checks above, then the Triton launchers (fastgen.triton_kernels.triplet)


def _triplet_cuda(kernels, anchor, positive, negative, margin, p, eps, swap, reduction):
    check_triplet("triplet_margin_loss", anchor, positive, negative, p, reduction)
    return kernels.triplet_margin_loss(
        anchor, positive, negative, margin, p, eps, swap, reduction, acc_dtype(anchor.dtype)
    )


def _triplet_backward_cuda(kernels, grad, anchor, positive, negative, margin, p, eps, swap, reduction):
    op = "triplet_margin_loss_backward"
    check_triplet(op, anchor, positive, negative, p, reduction)
    _check_grad(op, grad, anchor.shape[0], reduction)
    return kernels.triplet_margin_loss_backward(
        grad, anchor, positive, negative, margin, p, eps, swap, reduction, acc_dtype(anchor.dtype)
    )


def _contrastive_cuda(kernels, x1, x2, y, margin, eps, reduction):
    check_contrastive("contrastive_loss", x1, x2, y, reduction)
    return kernels.contrastive_loss(x1, x2, y, margin, eps, reduction, acc_dtype(x1.dtype))


def _contrastive_backward_cuda(kernels, grad, x1, x2, y, margin, eps, reduction, y_grad):
    op = "contrastive_loss_backward"
    check_contrastive(op, x1, x2, y, reduction)
    _check_grad(op, grad, x1.shape[0], reduction)
    if y_grad and not y.dtype.is_floating_point:
        raise RuntimeError(f"fastgen.{op}: y_grad=True needs a floating-point y, got {y.dtype}")
    return kernels.contrastive_loss_backward(grad, x1, x2, y, margin, eps, reduction, y_grad, acc_dtype(x1.dtype))


def _batch_hard_cuda(kernels, embeddings, labels, margin, squared, reduction):
    check_batch_hard("batch_hard_triplet_loss", embeddings, labels, reduction)
    return kernels.batch_hard_triplet_loss(embeddings, labels, margin, squared, reduction, acc_dtype(embeddings.dtype))


def _batch_hard_backward_cuda(kernels, grad, embeddings, positive, negative, margin, squared, reduction):
    rows, _ = embeddings.shape  # (the launchers' own unpacking, as before: a 2-D embeddings)
    _check_grad("batch_hard_triplet_loss_backward", grad, rows, reduction)
    return kernels.batch_hard_triplet_loss_backward(
        grad, embeddings, positive, negative, margin, squared, reduction, acc_dtype(embeddings.dtype)
    )


register_cuda(
    "triplet",
    {
        "triplet_margin_loss": _triplet_cuda,
        "triplet_margin_loss_backward": _triplet_backward_cuda,
        "contrastive_loss": _contrastive_cuda,
        "contrastive_loss_backward": _contrastive_backward_cuda,
        "batch_hard_triplet_loss": _batch_hard_cuda,
        "batch_hard_triplet_loss_backward": _batch_hard_backward_cuda,
    },
    # Launchers not traced yet: fake CUDA tensors on a CPU-only torch cannot run their host
    # code (README, CUDA; `make gpu-check` tries them on a GPU).
    untraced={"triplet_margin_loss_backward", "contrastive_loss_backward", "batch_hard_triplet_loss_backward"},
)
