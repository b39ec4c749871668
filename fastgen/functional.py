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

import math  # noqa: E402  (imported here to keep the RealNVP section self-contained)

__all__ += ["affine_coupling", "checkerboard_mask", "squeeze2d", "unsqueeze2d", "dequantize", "logit_transform",
            "logit_preprocess", "bits_per_dim"]

_COUPLING_MASKS = ("channel", "checkerboard")


def affine_coupling(
    x: torch.Tensor,
    s: torch.Tensor,
    t: torch.Tensor,
    *,
    mask: str = "channel",
    mask_parity: int = 0,
    scale: torch.Tensor | None = None,
    inverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RealNVP affine coupling and its log-determinant, in one pass: (y, logdet).

    Forward: y_b = x_b * exp(s) + t on the transformed part, identity on the conditioning part;
    inverse: x_b = (y_b - t) * exp(-s). logdet[b] = sum(s) over the transformed elements (the
    non-batch dims), negated for the inverse, accumulated and returned in float32 (float64 for
    float64 inputs).

    mask="channel": x is (B, C, ...) or (B, D) with C even; the halves are split on dim 1,
    mask_parity=0 transforms the second half (conditioning on the first), 1 the first; s and t
    have the shape of one half. mask="checkerboard": x is (B, C, H, W); the transformed elements
    are those with (h + w) % 2 != mask_parity; s and t have the shape of x and are ignored
    elsewhere. scale (broadcastable to s) makes the kernel use s_eff = scale * tanh(s).
    Differentiable in x, s, t and scale, twice.
    """
    fn = "affine_coupling"
    _checks.check_floating(fn, "x", x)
    if mask not in _COUPLING_MASKS:
        _checks.fail(fn, f"mask must be one of {_COUPLING_MASKS}, got {mask!r}")
    if mask_parity not in (0, 1) or isinstance(mask_parity, bool):
        _checks.fail(fn, f"mask_parity must be 0 or 1, got {mask_parity!r}")
    if mask == "channel":
        if x.dim() < 2:
            _checks.fail(fn, f"x must be (B, C, ...) or (B, D) for mask='channel', got shape {tuple(x.shape)}")
        if x.shape[1] % 2:
            _checks.fail(fn, f"x must have an even number of channels (dim 1) for mask='channel', got {x.shape[1]}")
        want = (x.shape[0], x.shape[1] // 2, *x.shape[2:])
    else:
        if x.dim() != 4:
            _checks.fail(fn, f"x must be 4-D (B, C, H, W) for mask='checkerboard', got shape {tuple(x.shape)}")
        want = tuple(x.shape)
    for name, u in (("s", s), ("t", t)):
        _checks.check_tensor(fn, name, u)
        if tuple(u.shape) != want:
            what = "one half of x" if mask == "channel" else "the shape of x"
            _checks.fail(fn, f"{name} must have shape {want} ({what}), got {tuple(u.shape)}")
        if u.dtype != x.dtype:
            _checks.fail(fn, f"{name} must have the dtype of x ({x.dtype}), got {u.dtype}", TypeError)
        if u.device != x.device:
            _checks.fail(fn, f"{name} must be on the device of x ({x.device}), got {u.device}")
    if scale is not None:
        _checks.check_tensor(fn, "scale", scale)
        try:
            broadcasts = torch.broadcast_shapes(scale.shape, s.shape) == s.shape
        except RuntimeError:
            broadcasts = False
        if not broadcasts:
            _checks.fail(fn, f"scale must broadcast to the shape of s {tuple(s.shape)}, got shape {tuple(scale.shape)}")
        if scale.dtype != x.dtype:
            _checks.fail(fn, f"scale must have the dtype of x ({x.dtype}), got {scale.dtype}", TypeError)
        if scale.device != x.device:
            _checks.fail(fn, f"scale must be on the device of x ({x.device}), got {scale.device}")
    return _ops.affine_coupling(x, s, t, scale, mask, mask_parity, bool(inverse))


def checkerboard_mask(height: int, width: int, mask_parity: int = 0, *, device=None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, 1, H, W): 1 where affine_coupling(mask="checkerboard") transforms ((h + w) % 2 !=
    mask_parity), 0 on the conditioning elements. For building a conditioner's masked input;
    the op itself never materializes a mask."""
    h = torch.arange(height, device=device).view(-1, 1)
    w = torch.arange(width, device=device).view(1, -1)
    return ((h + w) % 2 != mask_parity).to(dtype).view(1, 1, height, width)


def squeeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """RealNVP's squeeze (space-to-depth): (B, C, H, W) -> (B, C * f^2, H / f, W / f); channel
    c * f^2 + i * f + j holds pixel (i, j) of every f x f patch of channel c
    (torch.nn.functional.pixel_unshuffle's order). A permutation: no log-det."""
    fn = "squeeze2d"
    _checks.check_tensor(fn, "x", x)
    if x.dim() != 4:
        _checks.fail(fn, f"x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] % factor or x.shape[3] % factor:
        _checks.fail(fn, f"x must have H and W divisible by factor={factor}, got shape {tuple(x.shape)}")
    return torch.nn.functional.pixel_unshuffle(x, factor)


def unsqueeze2d(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """The inverse of squeeze2d: (B, C * f^2, H, W) -> (B, C, H * f, W * f)."""
    fn = "unsqueeze2d"
    _checks.check_tensor(fn, "x", x)
    if x.dim() != 4:
        _checks.fail(fn, f"x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] % (factor * factor):
        _checks.fail(fn, f"x must have channels divisible by factor**2={factor * factor}, got shape {tuple(x.shape)}")
    return torch.nn.functional.pixel_shuffle(x, factor)


def dequantize(x: torch.Tensor, noise: torch.Tensor | None = None, *, n_bins: int = 256,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization of x in [0, 1] holding multiples of 1 / (n_bins - 1):
    (x * (n_bins - 1) + u) / n_bins with u ~ U[0, 1) (drawn from `generator` unless `noise` is
    given). The result lies in [0, 1) and has a density on the continuous cube."""
    fn = "dequantize"
    _checks.check_floating(fn, "x", x)
    if noise is None:
        _checks.check_generator(fn, generator, x.device)
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    else:
        _checks.check_like(fn, "noise", noise, "x", x)
    return (x * (n_bins - 1) + noise) / n_bins


def logit_transform(x: torch.Tensor, *, alpha: float = 0.05, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """RealNVP's logit preprocessing and its log-determinant per sample: (y, logdet).

    y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1]; the inverse maps y back,
    x = (sigmoid(y) - alpha) / (1 - 2 alpha). logdet is summed over the non-batch dims in float32
    (float64 for float64)."""
    fn = "logit_transform"
    _checks.check_floating(fn, "x", x)
    _checks.check_batched(fn, "x", x)
    if not 0 <= alpha < 0.5:
        _checks.fail(fn, f"alpha must be in [0, 0.5), got {alpha}")
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    log_scale = math.log1p(-2 * alpha)
    if inverse:
        # log p + log(1 - p) = -softplus(-y) - softplus(y)
        per = torch.nn.functional.softplus(x) + torch.nn.functional.softplus(-x)
        out = (torch.sigmoid(x) - alpha) / (1 - 2 * alpha)
        return out, (-per - log_scale).flatten(1).sum(1, dtype=acc)
    p = alpha + (1 - 2 * alpha) * x
    log_p, log_q = torch.log(p), torch.log1p(-p)
    return log_p - log_q, (log_scale - log_p - log_q).flatten(1).sum(1, dtype=acc)


def logit_preprocess(x: torch.Tensor, noise: torch.Tensor | None = None, *, alpha: float = 0.05, n_bins: int = 256,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """dequantize then logit_transform: (y, logdet of the logit)."""
    return logit_transform(dequantize(x, noise, n_bins=n_bins, generator=generator), alpha=alpha)


def bits_per_dim(log_prob: torch.Tensor, num_dims: int, *, n_bins: int = 256) -> torch.Tensor:
    """Bits per dimension of n_bins-level discrete data, from the log-density (nats) of its
    dequantized version in [0, 1]^num_dims: (-log_prob / num_dims + log(n_bins)) / log(2)."""
    fn = "bits_per_dim"
    _checks.check_tensor(fn, "log_prob", log_prob)
    if num_dims <= 0:
        _checks.fail(fn, f"num_dims must be positive, got {num_dims}")
    return (-log_prob / num_dims + math.log(n_bins)) / math.log(2)



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
