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

__all__ += ["instance_norm"]

_ACTIVATIONS = (None, "relu", "leaky_relu")


def _check_activation(fn: str, activation, negative_slope) -> None:
    if activation not in _ACTIVATIONS:
        _checks.fail(fn, f"activation must be None, 'relu' or 'leaky_relu', got {activation!r}")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
        _checks.fail(fn, f"negative_slope must be a number, got {type(negative_slope).__name__}", TypeError)


def _check_channels(fn: str, name: str, t, x: torch.Tensor) -> None:
    if t is None:
        return
    _checks.check_floating(fn, name, t)
    channels = x.shape[1]
    if t.shape != (channels,):
        _checks.fail(fn, f"{name} must have shape ({channels},) (the input's channels), got {tuple(t.shape)}")
    if t.device != x.device:
        _checks.fail(fn, f"{name} must be on the device of input ({x.device}), got {t.device}")


def instance_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    activation: str | None = None,
    negative_slope: float = 0.01,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """torch.nn.functional.instance_norm fused with an activation and a residual add:

        out = act(instance_norm(input, ...)) + residual

    with activation None, "relu" or "leaky_relu" (negative_slope), in one pass forward and one
    pass backward. input is (N, C, *spatial), contiguous or channels-last (the output keeps its
    memory format). Statistics are computed in float32 (float64 for float64 input). With
    use_input_stats and running_mean/running_var given, those are updated in place as torch
    does (momentum, unbiased variance); with use_input_stats=False they normalize instead.
    """
    fn = "instance_norm"
    _checks.check_floating(fn, "input", input)
    if input.dim() < 2:
        _checks.fail(fn, f"input must have at least 2 dimensions (N, C, ...), got {input.dim()}-D input of shape "
                         f"{tuple(input.shape)}")
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                    ("running_var", running_var)):
        _check_channels(fn, name, t, input)
    if residual is not None:
        _checks.check_like(fn, "residual", residual, "input", input)
    _check_activation(fn, activation, negative_slope)
    spatial = 1
    for size in input.shape[2:]:
        spatial *= size
    if use_input_stats:
        if spatial == 1:
            # torch's own error (torch.nn.functional._verify_spatial_size)
            _checks.fail(fn, f"Expected more than 1 spatial element when training, got input size {input.size()}")
    elif running_mean is None or running_var is None:
        _checks.fail(fn, "running_mean and running_var must be given when use_input_stats is False")
    out, mean, var = _ops.instance_norm(
        input, weight, bias,
        None if use_input_stats else running_mean, None if use_input_stats else running_var,
        residual, bool(use_input_stats), float(eps), activation or "none", float(negative_slope),
    )
    if use_input_stats and (running_mean is not None or running_var is not None):
        if spatial:  # torch leaves the running stats alone for an empty spatial size
            with torch.no_grad():
                if running_mean is not None:
                    running_mean.mul_(1 - momentum).add_(mean.mean(0).to(running_mean.dtype), alpha=momentum)
                if running_var is not None:
                    unbiased = var.mean(0) * (spatial / (spatial - 1))
                    running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
    return out


# =========================================================================================
# Image-to-image: PixelShuffle (+PReLU) (csrc/pixel_shuffle.cpp)
# =========================================================================================


# =========================================================================================
# GAN training core: gradient penalty, GAN losses (csrc/grad_penalty.cpp)
# =========================================================================================


# =========================================================================================
# Face recognition and Siamese losses (csrc/margin_softmax.cpp)
# =========================================================================================
