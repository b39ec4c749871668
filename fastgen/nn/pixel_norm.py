"""Progressive GAN's pixel norm as a module."""
from __future__ import annotations

import torch
from torch import nn

from fastgen import _checks, functional as F


class PixelNorm(nn.Module):
    """Progressive GAN pixel norm: x * rsqrt(mean over channels of x**2 + eps), per pixel, for
    (N, C, ...) inputs (fastgen.functional.pixel_norm). No parameters."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
            _checks.fail("nn.PixelNorm", f"eps must be a number >= 0, got {eps!r}")
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
