from __future__ import annotations

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F


class Reparameterize(nn.Module):
    """VAE sampling layer: forward(mu, logvar, eps=None, generator=None) -> (z, kl).

    z = mu + exp(0.5 * logvar) * eps and the KL divergence to N(0, I), fused in one pass
    (fastgen.functional.reparameterize_kl). It samples in train and eval mode alike; pass
    eps=torch.zeros_like(mu) for the posterior mean.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        _checks.check_reduction("nn.Reparameterize", reduction)
        self.reduction = reduction

    def forward(
        self,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        eps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return F.reparameterize_kl(mu, logvar, eps, reduction=self.reduction, generator=generator)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
