"""Eager references for VAE reparameterization and the Gaussian KL divergence."""

from __future__ import annotations

import torch
from torch import nn

from fastgen._checks import reduce


def _sum_per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(1) if t.dim() > 1 else t


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    kl = -0.5 * _sum_per_sample(1 + logvar - mu.pow(2) - logvar.exp())
    return reduce(kl, reduction)


def reparameterize(mu, logvar, eps=None, *, generator=None):
    std = torch.exp(0.5 * logvar)
    if eps is None:
        eps = torch.randn(std.shape, dtype=std.dtype, device=std.device, generator=generator)
    return mu + std * eps


def reparameterize_kl(mu, logvar, eps=None, *, reduction="mean", generator=None):
    return reparameterize(mu, logvar, eps, generator=generator), kl_normal(mu, logvar, reduction=reduction)


class Reparameterize(nn.Module):
    """Eager twin of fastgen.nn.Reparameterize."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, mu, logvar, eps=None, generator=None):
        return reparameterize_kl(mu, logvar, eps, reduction=self.reduction, generator=generator)
