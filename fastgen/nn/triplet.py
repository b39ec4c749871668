"""Siamese / metric-learning losses: contrastive, triplet margin (torch's signature) and
batch-hard triplet, on fastgen's fused kernels."""

from __future__ import annotations

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F


class ContrastiveLoss(nn.Module):
    """forward(x1, x2, y) -> y d^2 + (1 - y) max(margin - d, 0)^2 (see functional.contrastive_loss)."""

    def __init__(self, margin: float = 1.0, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__()
        _checks.check_reduction("nn.ContrastiveLoss", reduction)
        self.margin, self.eps, self.reduction = margin, eps, reduction

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.contrastive_loss(x1, x2, y, self.margin, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


class TripletMarginLoss(nn.Module):
    """Drop-in for torch.nn.TripletMarginLoss (same arguments and defaults)."""

    def __init__(
        self,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        size_average=None,
        reduce=None,
        reduction: str = "mean",
    ):
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
        _checks.check_reduction("nn.TripletMarginLoss", reduction)
        self.margin, self.p, self.eps, self.swap, self.reduction = margin, p, eps, swap, reduction

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        return F.triplet_margin_loss(
            anchor,
            positive,
            negative,
            margin=self.margin,
            p=self.p,
            eps=self.eps,
            swap=self.swap,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"margin={self.margin}, p={self.p}, swap={self.swap}, reduction={self.reduction!r}"


class BatchHardTripletLoss(nn.Module):
    """forward(embeddings, labels) -> batch-hard triplet loss (see functional.batch_hard_triplet_loss)."""

    def __init__(self, margin: float = 0.3, squared: bool = False, reduction: str = "mean"):
        super().__init__()
        _checks.check_reduction("nn.BatchHardTripletLoss", reduction)
        self.margin, self.squared, self.reduction = margin, squared, reduction

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.batch_hard_triplet_loss(embeddings, labels, self.margin, self.squared, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, squared={self.squared}, reduction={self.reduction!r}"
