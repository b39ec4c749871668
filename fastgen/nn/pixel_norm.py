"""Progressive GAN's pixel norm as a module."""

from __future__ import annotations

import torch
from torch import nn

from fastgen import functional as F


class PixelNorm(nn.Module):
    """Progressive GAN pixel norm: x * rsqrt(mean over channels of x**2 + eps), per pixel, for
    (N, C, ...) inputs (fastgen.functional.pixel_norm). No parameters."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        F._check_pixel_norm_eps("nn.PixelNorm", eps)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
