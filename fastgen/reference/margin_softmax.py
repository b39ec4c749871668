"""Eager references for margin softmax cross-entropy (ArcFace, CosFace, SphereFace, combined),
written as the usual implementations do it (InsightFace's ArcMarginProduct / CombinedMarginLoss,
pytorch-metric-learning's angular margins): the whole batch x classes cosine matrix, the
margin computed over it, a one-hot blend, and F.cross_entropy in float32."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def clamp_eps(dtype: torch.dtype) -> float:
    """Keeps acos away from +-1, so its gradient is finite in the input dtype (float64: its own
    epsilon)."""
    return {torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10, torch.float64: torch.finfo(torch.float64).eps}.get(
        dtype, 1e-7
    )


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.linear(F.normalize(embeddings), F.normalize(weight))


def margin_cross_entropy(
    embeddings,
    weight,
    labels,
    *,
    s=64.0,
    m1=1.0,
    m2=0.5,
    m3=0.0,
    easy_margin=False,
    reduction="mean",
    ignore_index=-100,
    straight_through=False,
):
    """InsightFace's 2022 rule (the default) or, with straight_through, its current one."""
    cosine = cosine_logits(embeddings, weight)
    if straight_through:
        return _margin_cross_entropy_st(
            cosine, weight, labels, s, m1, m2, m3, easy_margin, reduction, ignore_index, embeddings.dtype
        )
    eps = clamp_eps(cosine.dtype)
    theta = torch.acos(cosine.clamp(-1 + eps, 1 - eps))
    phi = m1 * theta + m2
    # SphereFace's monotonic extension: (-1)^k cos(phi) - 2k for phi in [k pi, (k + 1) pi].
    k = torch.floor(phi.detach() / math.pi)
    psi = (1 - 2 * torch.remainder(k, 2)) * torch.cos(phi) - 2 * k
    if easy_margin:
        target = torch.where(cosine > 0, psi, cosine)
    elif m1 == 1.0:
        # ArcFace: past theta + m > pi, cos(theta + m) is no longer decreasing in theta.
        target = torch.where(phi > math.pi, cosine - m2 * math.sin(m2), psi)
    else:
        target = psi
    target = target - m3
    return _cross_entropy(cosine, target, weight, labels, s, reduction, ignore_index, embeddings.dtype)


def _cross_entropy(cosine, target, weight, labels, s, reduction, ignore_index, dtype):
    valid = labels != ignore_index
    one_hot = F.one_hot(torch.where(valid, labels, 0).long(), weight.shape[0]).bool() & valid[:, None]
    logits = s * torch.where(one_hot, target, cosine)
    # The softmax in float32 at least (F.cross_entropy subtracts the row max).
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    loss = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction=reduction)
    return loss.to(dtype)


def _margin_cross_entropy_st(cosine, weight, labels, s, m1, m2, m3, easy_margin, reduction, ignore_index, dtype):
    """InsightFace's current arcface_torch CombinedMarginLoss: under torch.no_grad the cosines
    go through arccos, the target gets m1 * theta + m2, and back through cos, so the margin is a
    constant in backward; no fallback past theta + m2 > pi."""
    with torch.no_grad():
        psi = torch.cos(m1 * torch.acos(cosine.clamp(-1, 1)) + m2)
        if easy_margin:
            psi = torch.where(cosine > 0, psi, cosine)
    # psi forward (cosine - cosine.detach() is 0), the gradient of cosine backward.
    target = (cosine - cosine.detach()) + psi - m3
    return _cross_entropy(cosine, target, weight, labels, s, reduction, ignore_index, dtype)


class CombinedMarginLoss(nn.Module):
    """Eager twin of fastgen.nn.CombinedMarginLoss (same parameters, same state_dict)."""

    def __init__(
        self,
        embedding_size,
        num_classes,
        s=64.0,
        m1=1.0,
        m2=0.5,
        m3=0.0,
        *,
        easy_margin=False,
        reduction="mean",
        ignore_index=-100,
        straight_through=False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.embedding_size, self.num_classes = embedding_size, num_classes
        self.s, self.m1, self.m2, self.m3 = s, m1, m2, m3
        self.easy_margin, self.reduction, self.ignore_index = easy_margin, reduction, ignore_index
        self.straight_through = straight_through
        # InsightFace's PartialFC_V2: torch.normal(0, 0.01, (num_local, embedding_size)).
        self.weight = nn.Parameter(torch.normal(0.0, 0.01, (num_classes, embedding_size), device=device, dtype=dtype))

    def forward(self, embeddings, labels):
        return margin_cross_entropy(
            embeddings,
            self.weight,
            labels,
            s=self.s,
            m1=self.m1,
            m2=self.m2,
            m3=self.m3,
            easy_margin=self.easy_margin,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            straight_through=self.straight_through,
        )

    @torch.no_grad()
    def cosine(self, embeddings):
        return cosine_logits(embeddings, self.weight)


class ArcFaceLoss(CombinedMarginLoss):
    def __init__(self, embedding_size, num_classes, s=64.0, m=0.5, **kwargs):
        super().__init__(embedding_size, num_classes, s, 1.0, m, 0.0, **kwargs)


class CosFaceLoss(CombinedMarginLoss):
    def __init__(self, embedding_size, num_classes, s=64.0, m=0.35, **kwargs):
        super().__init__(embedding_size, num_classes, s, 1.0, 0.0, m, **kwargs)


class SphereFaceLoss(CombinedMarginLoss):
    def __init__(self, embedding_size, num_classes, s=64.0, m=4, **kwargs):
        super().__init__(embedding_size, num_classes, s, float(m), 0.0, 0.0, **kwargs)
