"""Eager references for the GAN training core: WGAN-GP interpolation and gradient penalty, the
R1 penalty, the GAN losses (all taking logits) and WGAN weight clipping, as a user writes them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _per_sample(alpha: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return alpha.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def interpolate(real, fake, alpha=None, *, generator=None):
    if alpha is None:
        alpha = torch.rand(real.shape[0], dtype=real.dtype, device=real.device, generator=generator)
    elif not isinstance(alpha, torch.Tensor):
        alpha = torch.full((real.shape[0],), float(alpha), dtype=real.dtype, device=real.device)
    alpha = _per_sample(alpha, real)
    return alpha * real + (1 - alpha) * fake


def fade_in(new, old, alpha):
    """Progressive GAN: blend the new, higher-resolution branch into the upsampled old one."""
    return alpha * new + (1 - alpha) * old


def _per_sample_sq_norm(grads):
    flat = grads.flatten(1) if grads.dim() > 1 else grads[:, None]
    return flat.pow(2).sum(1)


def grad_norm_penalty(grads, *, target=1.0, weight=10.0, one_sided=False):
    if target == 0:  # the squared norm itself, no sqrt (the R1 form)
        return weight * _per_sample_sq_norm(grads).mean()
    norm = torch.sqrt(_per_sample_sq_norm(grads) + 1e-12)
    gap = norm - target
    if one_sided:
        gap = F.relu(gap)
    return weight * gap.pow(2).mean()


def r1_penalty(grads, gamma):
    return gamma / 2 * _per_sample_sq_norm(grads).mean()


def gradient_penalty(critic, real, fake, *, weight=10.0, target=1.0, alpha=None, generator=None):
    x_hat = interpolate(real.detach(), fake.detach(), alpha, generator=generator).requires_grad_(True)
    (grads,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return grad_norm_penalty(grads, target=target, weight=weight)


def r1_regularization(critic, real, gamma):
    x = real.detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return r1_penalty(grads, gamma)


def discriminator_loss(real_logits, fake_logits, kind="bce"):
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if kind == "lsgan":
        return 0.5 * F.mse_loss(real_logits, torch.ones_like(real_logits)) + 0.5 * F.mse_loss(
            fake_logits, torch.zeros_like(fake_logits)
        )
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "wasserstein":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown discriminator loss {kind!r}")


def generator_loss(fake_logits, kind="nonsaturating"):
    if kind == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if kind == "minimax":
        # minimize log(1 - D(G(z))) = -BCE(logits, 0)
        return -F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if kind == "lsgan":
        return 0.5 * F.mse_loss(fake_logits, torch.ones_like(fake_logits))
    if kind in ("hinge", "wasserstein"):
        return -fake_logits.mean()
    raise ValueError(f"unknown generator loss {kind!r}")


@torch.no_grad()
def clip_weights_(module_or_params, clip=0.01):
    params = module_or_params.parameters() if isinstance(module_or_params, nn.Module) else module_or_params
    for p in params:
        p.clamp_(-clip, clip)
