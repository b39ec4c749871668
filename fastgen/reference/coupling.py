"""Eager references for RealNVP: the affine coupling with its log-determinant, the
squeeze (space-to-depth), the dequantize + logit preprocessing and bits per dim.

Written as the RealNVP papers' code and normflows / zuko / FrEIA write them: split, transform
the one part with exp(s) and t, concatenate, and sum s for the log-determinant.
"""

from __future__ import annotations

import math

import torch

from fastgen._checks import acc_dtype
from fastgen.nn import coupling as fastgen_nn


def checkerboard_mask(height: int, width: int, mask_parity: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 1, H, W): 1 on the transformed elements, (h + w) % 2 != mask_parity, 0 elsewhere."""
    h = torch.arange(height, device=device).view(-1, 1)
    w = torch.arange(width, device=device).view(1, -1)
    return ((h + w) % 2 != mask_parity).to(dtype).view(1, 1, height, width)


def _effective_s(s, scale):
    return s if scale is None else scale * torch.tanh(s)


def affine_coupling(x, s, t, *, mask="channel", mask_parity=0, scale=None, inverse=False):
    """(y, logdet): y_b = x_b * exp(s) + t on the transformed part (x_b = (y_b - t) * exp(-s)
    for the inverse), identity on the rest; logdet[b] = +-sum(s) over the transformed part."""
    s = _effective_s(s, scale)
    acc = acc_dtype(x.dtype)  # the log-determinant sums every transformed element: float32 at least
    if mask == "channel":
        x_a, x_b = x.chunk(2, dim=1)
        if mask_parity == 1:
            x_a, x_b = x_b, x_a
        y_b = (x_b - t) * torch.exp(-s) if inverse else x_b * torch.exp(s) + t
        y = torch.cat([x_a, y_b] if mask_parity == 0 else [y_b, x_a], dim=1)
        logdet = s.flatten(1).sum(1, dtype=acc)
    else:
        b = checkerboard_mask(x.shape[2], x.shape[3], mask_parity, device=x.device, dtype=x.dtype)
        s = s * b
        t = t * b
        y = (x - t) * torch.exp(-s) if inverse else x * torch.exp(s) + t
        logdet = s.flatten(1).sum(1, dtype=acc)
    return y, (-logdet if inverse else logdet)


class AffineCoupling(fastgen_nn.AffineCoupling):
    """Eager twin of fastgen.nn.AffineCoupling: the same module (parameters, state_dict) with
    the coupling and the mask written in plain torch."""

    def _couple(self, x, s, t, scale, inverse):
        return affine_coupling(x, s, t, mask=self.mask, mask_parity=self.mask_parity, scale=scale, inverse=inverse)

    def _conditioning_mask(self, x):
        return 1 - checkerboard_mask(x.shape[2], x.shape[3], self.mask_parity, device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------- preprocessing


def squeeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (B, C * f * f, H / f, W / f); channel c * f * f + i * f + j holds pixel (i, j)
    of every f x f patch of channel c."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // factor, factor, w // factor, factor)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * factor * factor, h // factor, w // factor)


def unsqueeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    x = x.reshape(b, c // (factor * factor), factor, factor, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // (factor * factor), h * factor, w * factor)


def dequantize(x: torch.Tensor, noise: torch.Tensor | None = None, *, n_bins: int = 256, generator=None):
    """x in [0, 1] holding multiples of 1 / (n_bins - 1) -> (x * (n_bins - 1) + u) / n_bins, u ~ U[0, 1)."""
    if noise is None:
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return (x * (n_bins - 1) + noise) / n_bins


def logit_transform(x: torch.Tensor, *, alpha: float = 0.05, inverse: bool = False):
    """(y, logdet) of y = logit(alpha + (1 - 2 alpha) x); the inverse maps y back to x."""
    acc = acc_dtype(x.dtype)
    if inverse:
        p = torch.sigmoid(x)
        out = (p - alpha) / (1 - 2 * alpha)
        logdet = (torch.log(p) + torch.log1p(-p) - math.log(1 - 2 * alpha)).flatten(1).sum(1, dtype=acc)
        return out, logdet
    p = alpha + (1 - 2 * alpha) * x
    y = torch.log(p) - torch.log1p(-p)
    logdet = (math.log(1 - 2 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1, dtype=acc)
    return y, logdet


def preprocess(x, noise=None, *, alpha=0.05, n_bins=256, generator=None):
    """Dequantize then logit: (y, logdet of the logit part)."""
    return logit_transform(dequantize(x, noise, n_bins=n_bins, generator=generator), alpha=alpha)


def bits_per_dim(log_prob: torch.Tensor, num_dims: int, *, n_bins: int = 256) -> torch.Tensor:
    """Bits per dimension of discrete data with n_bins levels, from the log-density of its
    dequantized version in [0, 1]^D."""
    return (-log_prob / num_dims + math.log(n_bins)) / math.log(2)
