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

__all__ += ["pixel_shuffle", "pixel_unshuffle", "pixel_shuffle_prelu", "prelu"]


def _check_factor(fn: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _checks.fail(fn, f"{name} must be an int, got {type(value).__name__}", TypeError)
    if value <= 0:
        _checks.fail(fn, f"{name} must be positive, got {value}")


def _check_shuffle_input(fn: str, input, factor_name: str, factor) -> None:
    _checks.check_floating(fn, "input", input)
    _check_factor(fn, factor_name, factor)
    if input.dim() < 3:
        _checks.fail(fn, f"input must have at least 3 dimensions (*, C, H, W), got {input.dim()}")


def _check_prelu_weight(fn: str, weight, input, channels: int, what: str) -> None:
    _checks.check_floating(fn, "weight", weight)
    if weight.dim() > 1:
        _checks.fail(fn, f"weight must be a scalar or 1-D tensor, got {weight.dim()} dimensions")
    if weight.numel() not in (1, channels):
        _checks.fail(fn, f"weight must have 1 or C = {channels} ({what}) elements, got {weight.numel()}")
    if weight.dtype != input.dtype:
        _checks.fail(fn, f"weight must have the dtype of input ({input.dtype}), got {weight.dtype}", TypeError)
    if weight.device != input.device:
        _checks.fail(fn, f"weight must be on the device of input ({input.device}), got {weight.device}")


def pixel_shuffle(input: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """torch.nn.functional.pixel_shuffle: (*, C*r*r, H, W) -> (*, C, H*r, W*r).

    A 4-D channels_last input is shuffled natively and gives a channels_last output."""
    fn = "pixel_shuffle"
    _check_shuffle_input(fn, input, "upscale_factor", upscale_factor)
    rr = upscale_factor * upscale_factor
    if input.shape[-3] % rr:
        _checks.fail(fn, f"input.size(-3) (channels) must be divisible by upscale_factor**2 = {rr}, got {input.shape[-3]}")
    return _ops.pixel_shuffle(input, upscale_factor)


def pixel_unshuffle(input: torch.Tensor, downscale_factor: int) -> torch.Tensor:
    """torch.nn.functional.pixel_unshuffle: (*, C, H*r, W*r) -> (*, C*r*r, H, W)."""
    fn = "pixel_unshuffle"
    _check_shuffle_input(fn, input, "downscale_factor", downscale_factor)
    r = downscale_factor
    if input.shape[-2] % r or input.shape[-1] % r:
        _checks.fail(fn, f"input's height and width must be divisible by downscale_factor = {r}, got "
                         f"{input.shape[-2]} x {input.shape[-1]}")
    return _ops.pixel_unshuffle(input, downscale_factor)


def pixel_shuffle_prelu(input: torch.Tensor, weight: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """prelu(pixel_shuffle(input, upscale_factor), weight) in one pass, bit-exact with
    torch.nn.PixelShuffle followed by torch.nn.PReLU; backward is one pass too.

    weight has 1 element or one per output channel (C = input.size(-3) / r**2); a per-channel
    weight needs a 4-D input (N, C*r*r, H, W), where the output's channel dim is dim 1 as
    torch.nn.PReLU expects."""
    fn = "pixel_shuffle_prelu"
    _check_shuffle_input(fn, input, "upscale_factor", upscale_factor)
    rr = upscale_factor * upscale_factor
    if input.shape[-3] % rr:
        _checks.fail(fn, f"input.size(-3) (channels) must be divisible by upscale_factor**2 = {rr}, got {input.shape[-3]}")
    channels = input.shape[-3] // rr
    _check_prelu_weight(fn, weight, input, channels, "output channels")
    if weight.numel() > 1 and input.dim() != 4:
        _checks.fail(fn, f"input must be 4-D (N, C*r*r, H, W) with a per-channel weight, got {input.dim()}-D")
    return _ops.pixel_shuffle_prelu(input, weight, upscale_factor)


def prelu(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.prelu: input > 0 ? input : weight * input, with weight shared or one
    per channel (dim 1); one pass forward and backward (pixel_shuffle_prelu with factor 1)."""
    fn = "prelu"
    _checks.check_floating(fn, "input", input)
    channels = input.shape[1] if input.dim() >= 2 else 1
    _check_prelu_weight(fn, weight, input, channels, "input.size(1)")
    if input.dim() == 4:
        return _ops.pixel_shuffle_prelu(input, weight, 1)
    # Any other rank as an image: (N, C) as channels_last (N, C, 1, 1) (so the kernel runs along
    # C), (N, C, rest...) as (N, C, rest, 1), and no channel dim as one (1, 1, numel, 1) plane.
    shape = input.shape
    if input.dim() < 2:
        image = input.reshape(1, 1, input.numel(), 1)
    elif input.dim() == 2:
        image = input.reshape(shape[0], 1, 1, shape[1]).permute(0, 3, 1, 2)
    else:
        rest = 1
        for size in shape[2:]:
            rest *= size
        image = input.reshape(shape[0], shape[1], rest, 1)
    return _ops.pixel_shuffle_prelu(image, weight, 1).reshape(shape)


# =========================================================================================
# GAN training core: gradient penalty, GAN losses (csrc/grad_penalty.cpp)
# =========================================================================================


# =========================================================================================
# Face recognition and Siamese losses (csrc/margin_softmax.cpp)
# =========================================================================================
