"""Margin softmax (ArcFace / CosFace / SphereFace / combined): fake impls and the CUDA (Triton)
kernels for fastgen::margin_softmax and
fastgen::margin_softmax_backward.

The math lives in csrc/margin_softmax.cpp, the autograd in csrc/autograd/margin_softmax.cpp. Its
double backward differentiates an ATen-op formulation of the op (the same as torch_margin_softmax
below, which the tests compare with the op), which materializes the batch x classes
cosines: it exists for correctness of higher-order gradients, not speed.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from fastgen._checks import INTEGER_DTYPES, acc_dtype, check_same_device
from fastgen.ops._triton import register_cuda

_ops = torch.ops.fastgen


# The per-row log-sum-exp is returned in float64 whatever the input dtype (csrc/margin_softmax.cpp
# says why); the target logit and cosine in the compute dtype.
LSE_DTYPE = torch.float64


def clamp_eps(dtype: torch.dtype) -> float:
    """How far the target cosine is kept from +-1 before acos: the kernels compute cosines in
    float32 for float32, float16 and bfloat16 inputs, where 1e-7 keeps d acos/d cos finite, and
    in float64 for float64, which uses float64's own epsilon (see csrc/margin_softmax.cpp; the
    eager reference needs a coarser clamp in bfloat16/float16)."""
    return torch.finfo(torch.float64).eps if dtype == torch.float64 else 1e-7


def check_args(op, embeddings, weight, labels, class_start, num_classes, s) -> None:
    """The checks csrc/margin_softmax.cpp makes, for the fake impls and the Triton launchers."""
    torch._check(
        embeddings.dim() == 2,
        lambda: f"fastgen.{op}: embeddings must be 2-D (batch, embedding_size), got {embeddings.dim()}-D",
    )
    torch._check(
        embeddings.dtype.is_floating_point,
        lambda: f"fastgen.{op}: embeddings must be a floating-point tensor, got {embeddings.dtype}",
    )
    torch._check(
        weight.dim() == 2,
        lambda: f"fastgen.{op}: weight must be 2-D (num_classes, embedding_size), got {weight.dim()}-D",
    )
    torch._check(
        weight.dtype == embeddings.dtype,
        lambda: f"fastgen.{op}: weight must have the dtype of embeddings ({embeddings.dtype}), got {weight.dtype}",
    )
    torch._check(
        weight.device == embeddings.device,
        lambda: f"fastgen.{op}: weight must be on the device of embeddings ({embeddings.device}), got {weight.device}",
    )
    torch._check(
        weight.shape[1] == embeddings.shape[1],
        lambda: (
            f"fastgen.{op}: weight must have embedding size {embeddings.shape[1]} (the embeddings' "
            f"size), got {weight.shape[1]}"
        ),
    )
    torch._check(weight.shape[0] > 0, lambda: f"fastgen.{op}: weight must have at least one class, got 0")
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
    torch._check(
        class_start >= 0 and class_start + weight.shape[0] <= num_classes,
        lambda: (
            f"fastgen.{op}: the weight's classes [class_start, class_start + {weight.shape[0]}) must "
            f"lie in [0, num_classes), got class_start={class_start}, num_classes={num_classes}"
        ),
    )
    torch._check(s > 0 and math.isfinite(s), lambda: f"fastgen.{op}: s must be a positive finite scale, got {s}")


def _check_rows(op, name, t, batch) -> None:
    if t is not None:
        torch._check(
            t.dim() == 1 and t.shape[0] == batch,
            lambda: f"fastgen.{op}: {name} must have shape ({batch},), got {tuple(t.shape)}",
        )


@torch.library.register_fake("fastgen::margin_softmax")
def _margin_softmax_fake(
    embeddings,
    weight,
    labels,
    class_start,
    num_classes,
    s,
    m1,
    m2,
    m3,
    easy_margin,
    ignore_index,
    straight_through=False,
):
    check_args("margin_softmax", embeddings, weight, labels, class_start, num_classes, s)
    rows = embeddings.new_empty((embeddings.shape[0],), dtype=acc_dtype(embeddings.dtype))
    return embeddings.new_empty((embeddings.shape[0],), dtype=LSE_DTYPE), rows, torch.empty_like(rows)


@torch.library.register_fake("fastgen::margin_softmax_backward")
def _margin_softmax_backward_fake(
    grad_lse,
    grad_target,
    embeddings,
    weight,
    labels,
    lse,
    target_cos,
    class_start,
    num_classes,
    s,
    m1,
    m2,
    m3,
    easy_margin,
    ignore_index,
    output_mask,
    straight_through=False,
):
    op = "margin_softmax_backward"
    check_args(op, embeddings, weight, labels, class_start, num_classes, s)
    batch = embeddings.shape[0]
    for name, t in (("lse", lse), ("target_cos", target_cos), ("grad_lse", grad_lse), ("grad_target", grad_target)):
        _check_rows(op, name, t, batch)
    check_same_device(
        op, "embeddings", embeddings, lse=lse, target_cos=target_cos, grad_lse=grad_lse, grad_target=grad_target
    )
    grad_emb = (
        torch.empty_like(embeddings, memory_format=torch.contiguous_format)
        if output_mask[0]
        else embeddings.new_empty((0,))
    )
    grad_w = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
    return grad_emb, grad_w


# ---------------------------------------------------------------------------------------
# the op in torch ops (double backward)


def torch_target_logit(cos_t, s, m1, m2, m3, easy_margin, eps, straight_through=False):
    """s * (psi - m3) of csrc/margin_softmax.cpp's target_logit, in differentiable torch ops."""
    if straight_through:
        # InsightFace's current rule: cos(m1 theta + m2) for every theta, the margin a constant
        # in backward (cos_t - cos_t.detach() is 0 forward and passes d/d cos = 1).
        psi = torch.cos(m1 * torch.acos(cos_t.detach().clamp(-1, 1)) + m2)
        if easy_margin:
            psi = torch.where(cos_t > 0, psi, cos_t.detach())
        return s * ((cos_t - cos_t.detach() + psi) - m3)
    c = cos_t.clamp(-1 + eps, 1 - eps)
    phi = m1 * torch.acos(c) + m2
    k = torch.floor(phi.detach() / math.pi)
    psi = (1 - 2 * torch.remainder(k, 2)) * torch.cos(phi) - 2 * k
    if easy_margin:
        value = torch.where(cos_t > 0, psi, cos_t)
    elif m1 == 1.0:
        value = torch.where(phi > math.pi, cos_t - m2 * math.sin(m2), psi)
    else:
        value = psi
    return s * (value - m3)


def torch_margin_softmax(
    embeddings,
    weight,
    labels,
    class_start,
    num_classes,
    s,
    m1,
    m2,
    m3,
    easy_margin,
    ignore_index,
    straight_through=False,
):
    """(lse, target_logit) of fastgen::margin_softmax, materializing the cosines."""
    compute = acc_dtype(embeddings.dtype)
    cos = F.normalize(embeddings.to(compute), dim=1) @ F.normalize(weight.to(compute), dim=1).T
    local = labels.long() - class_start
    ignored = labels == ignore_index
    has_target = ~ignored & (local >= 0) & (local < weight.shape[0])
    index = torch.where(has_target, local, 0)[:, None]
    cos_t = cos.gather(1, index).squeeze(1)
    target = torch_target_logit(cos_t, s, m1, m2, m3, easy_margin, clamp_eps(embeddings.dtype), straight_through)
    logits = s * cos
    logits = logits.scatter(1, index, torch.where(has_target, target, logits.gather(1, index).squeeze(1))[:, None])
    lse = torch.where(ignored, 0.0, torch.logsumexp(logits, 1))
    return lse.to(LSE_DTYPE), torch.where(has_target, target, 0.0)


# ---------------------------------------------------------------------------------------
# CUDA: the checks above, then the Triton launchers (fastgen.triton_kernels.margin_softmax),
# which compute the B target logits with torch_target_logit (passed in, bound to the margins)


def check_labels(op, labels, num_classes, ignore_index) -> None:
    """Every label a class index or ignore_index (csrc/margin_softmax.cpp makes this check too;
    it reads the labels, so the CUDA functions are not traced: README, CUDA)."""
    ok = (labels == ignore_index) | ((labels >= 0) & (labels < num_classes))
    if not bool(ok.all()):
        bad = labels[~ok][0].item()
        raise RuntimeError(
            f"fastgen.{op}: labels must be class indices in [0, {num_classes}) or ignore_index "
            f"({ignore_index}), got {bad}"
        )


def _target_logit(embeddings, s, m1, m2, m3, easy_margin, straight_through):
    """cos_t -> the target logit (torch_target_logit with this call's margins)."""
    return functools.partial(
        torch_target_logit,
        s=s,
        m1=m1,
        m2=m2,
        m3=m3,
        easy_margin=easy_margin,
        eps=clamp_eps(embeddings.dtype),
        straight_through=straight_through,
    )


def _margin_softmax_cuda(
    kernels,
    embeddings,
    weight,
    labels,
    class_start,
    num_classes,
    s,
    m1,
    m2,
    m3,
    easy_margin,
    ignore_index,
    straight_through=False,
):
    check_args("margin_softmax", embeddings, weight, labels, class_start, num_classes, s)
    check_labels("margin_softmax", labels, num_classes, ignore_index)
    return kernels.margin_softmax(
        embeddings,
        weight,
        labels,
        class_start,
        s,
        ignore_index,
        _target_logit(embeddings, s, m1, m2, m3, easy_margin, straight_through),
        acc_dtype(embeddings.dtype),
        LSE_DTYPE,
    )


def _margin_softmax_backward_cuda(
    kernels,
    grad_lse,
    grad_target,
    embeddings,
    weight,
    labels,
    lse,
    target_cos,
    class_start,
    num_classes,
    s,
    m1,
    m2,
    m3,
    easy_margin,
    ignore_index,
    output_mask,
    straight_through=False,
):
    op = "margin_softmax_backward"
    check_args(op, embeddings, weight, labels, class_start, num_classes, s)
    check_labels(op, labels, num_classes, ignore_index)
    return kernels.margin_softmax_backward(
        grad_lse,
        grad_target,
        embeddings,
        weight,
        labels,
        lse,
        target_cos,
        class_start,
        s,
        ignore_index,
        output_mask,
        _target_logit(embeddings, s, m1, m2, m3, easy_margin, straight_through),
        acc_dtype(embeddings.dtype),
        LSE_DTYPE,
    )


register_cuda(
    "margin_softmax",
    {"margin_softmax": _margin_softmax_cuda, "margin_softmax_backward": _margin_softmax_backward_cuda},
    untraced={"margin_softmax", "margin_softmax_backward"},
)
