"""Margin softmax losses for face recognition: ArcFace, CosFace, SphereFace and InsightFace's
combined margin. Each holds the class centers as the parameter `weight` of shape
(num_classes, embedding_size) and computes fastgen.functional.margin_cross_entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as TF
from torch import nn

from fastgen import _checks
from fastgen import functional as F


class CombinedMarginLoss(nn.Module):
    """forward(embeddings (B, E), labels (B,)) -> loss; target logit s * (cos(m1 theta + m2) - m3).

    `weight` (num_classes, embedding_size) is initialized as InsightFace's arcface_torch
    initializes its class centers (PartialFC: N(0, 0.01), whatever the number of classes).
    straight_through=True: InsightFace's current rule (no fallback past pi, the margin a
    constant in backward); the default is its 2022 rule with the exact gradient
    (fastgen.functional.margin_cross_entropy)."""

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        s: float = 64.0,
        m1: float = 1.0,
        m2: float = 0.5,
        m3: float = 0.0,
        *,
        easy_margin: bool = False,
        reduction: str = "mean",
        ignore_index: int = -100,
        straight_through: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = f"nn.{type(self).__name__}"
        for arg, value in (("embedding_size", embedding_size), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                _checks.fail(name, f"{arg} must be a positive int, got {value!r}")
        _checks.check_reduction(name, reduction)
        if not s > 0:
            _checks.fail(name, f"s must be a positive finite scale, got {s!r}")
        self.embedding_size, self.num_classes = embedding_size, num_classes
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.easy_margin, self.reduction, self.ignore_index = easy_margin, reduction, ignore_index
        self.straight_through = bool(straight_through)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # arcface_torch's PartialFC_V2: torch.normal(0, 0.01, (num_local, embedding_size)).
        nn.init.normal_(self.weight, 0.0, 0.01)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.margin_cross_entropy(
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
    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosines of the embeddings to every class center, (B, num_classes): for inference."""
        return TF.linear(TF.normalize(embeddings), TF.normalize(self.weight))

    def extra_repr(self) -> str:
        return (
            f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, s={self.s}, m1={self.m1}, "
            f"m2={self.m2}, m3={self.m3}, easy_margin={self.easy_margin}, reduction={self.reduction!r}"
            + (", straight_through=True" if self.straight_through else "")
        )


class ArcFaceLoss(CombinedMarginLoss):
    """ArcFace (Deng et al.): additive angular margin, target logit s * cos(theta + m)."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.5, **kwargs):
        super().__init__(embedding_size, num_classes, s, 1.0, m, 0.0, **kwargs)


class CosFaceLoss(CombinedMarginLoss):
    """CosFace / AM-Softmax (Wang et al.): additive cosine margin, target logit s * (cos(theta) - m)."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 0.35, **kwargs):
        super().__init__(embedding_size, num_classes, s, 1.0, 0.0, m, **kwargs)


class SphereFaceLoss(CombinedMarginLoss):
    """SphereFace (Liu et al.): multiplicative angular margin, target logit s * psi(m theta) with
    psi(phi) = (-1)^k cos(phi) - 2k on [k pi, (k + 1) pi] (monotonic in theta)."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 64.0, m: float = 4, **kwargs):
        super().__init__(embedding_size, num_classes, s, float(m), 0.0, 0.0, **kwargs)
