"""fastgen's functional API: argument checks, then torch.ops.fastgen.*.

Every function here is a drop-in for the eager code in fastgen/reference/, which is the
executable specification (and what the parity tests compare against).
"""
from __future__ import annotations

import torch

from fastgen import _checks

__all__ = []

_ops = torch.ops.fastgen


# =========================================================================================
# VAE: reparameterized sampling + KL (csrc/reparam_kl.cpp)
# =========================================================================================

__all__ += ["reparameterize_kl", "reparameterize", "kl_normal"]


def _draw_seed(device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """A 64-bit Philox key from torch's generator (the default one, or `generator`).

    Drawing it advances the generator, so consecutive calls get fresh noise and the same
    torch.manual_seed reproduces it."""
    return torch.randint(2**63 - 1, (), dtype=torch.int64, device=device, generator=generator)


def _check_gaussian(fn: str, mu, logvar, eps=None, reduction: str | None = None) -> None:
    _checks.check_floating(fn, "mu", mu)
    _checks.check_batched(fn, "mu", mu)
    _checks.check_like(fn, "logvar", logvar, "mu", mu)
    if eps is not None:
        _checks.check_like(fn, "eps", eps, "mu", mu)
    if reduction is not None:
        _checks.check_reduction(fn, reduction)


def reparameterize_kl(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    reduction: str = "mean",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE sampling and its KL divergence to N(0, I), in one pass.

    z = mu + exp(0.5 * logvar) * eps, and kl[b] = -0.5 * sum(1 + logvar - mu**2 - exp(logvar))
    over all non-batch dims (dim 0 is the batch), reduced over the batch by `reduction`
    ("none" -> shape (B,), "mean", "sum").

    When eps is None the noise is drawn inside the kernel (Philox keyed by a seed drawn from
    `generator` or torch's default generator) and regenerated in backward, never stored.
    Accumulates in float32 (float64 for float64 inputs).
    """
    fn = "reparameterize_kl"
    _check_gaussian(fn, mu, logvar, eps, reduction)
    seed = None
    if eps is None:
        _checks.check_generator(fn, generator, mu.device)
        seed = _draw_seed(mu.device, generator)
    return _ops.reparam_kl(mu, logvar, eps, seed, reduction)


def reparameterize(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    eps: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """z = mu + exp(0.5 * logvar) * eps (eps drawn in-kernel when None); see reparameterize_kl."""
    fn = "reparameterize"
    _check_gaussian(fn, mu, logvar, eps)
    seed = None
    if eps is None:
        _checks.check_generator(fn, generator, mu.device)
        seed = _draw_seed(mu.device, generator)
    return _ops.reparam_kl(mu, logvar, eps, seed, "none")[0]


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over the non-batch dims, then
    reduced over the batch ("none" -> shape (B,), "mean", "sum")."""
    fn = "kl_normal"
    _check_gaussian(fn, mu, logvar, reduction=reduction)
    return _ops.kl_normal(mu, logvar, reduction)


# =========================================================================================
# RealNVP: affine coupling (csrc/coupling.cpp)
# =========================================================================================


# =========================================================================================
# Image-to-image: instance norm (csrc/instance_norm.cpp)
# =========================================================================================


# =========================================================================================
# Image-to-image: PixelShuffle (+PReLU) (csrc/pixel_shuffle.cpp)
# =========================================================================================


# =========================================================================================
# GAN training core: gradient penalty, GAN losses (csrc/grad_penalty.cpp)
# =========================================================================================


# =========================================================================================
# Face recognition and Siamese losses (csrc/margin_softmax.cpp)
# =========================================================================================
