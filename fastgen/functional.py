"""fastgen's functional API: argument checks, then torch.ops.fastgen.*.

Every function here is a drop-in for the eager code in fastgen/reference/, which is the
executable specification (and what the parity tests compare against).
"""

from __future__ import annotations

import numbers

import torch

from fastgen import _checks

__all__ = []

_ops = torch.ops.fastgen  # autograd included (C++: csrc/autograd/)


# =========================================================================================
# VAE: reparameterized sampling + KL (csrc/reparam_kl.cpp)
# =========================================================================================

__all__ += ["reparameterize_kl", "reparameterize", "kl_normal"]


def _draw_seed(device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """A 64-bit Philox key from torch's generator (the default one, or `generator`)."""
    # Drawing it advances the generator: consecutive calls get fresh noise, and the same
    # torch.manual_seed reproduces it.
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
    ("none" -> shape (B,), "mean", "sum"). Returns (z, kl); accumulates in float32 (float64
    for float64 inputs).

    When eps is None the noise is drawn from `generator` (or torch's default generator), so
    torch.manual_seed reproduces it.

        z, kl = reparameterize_kl(mu, logvar)            # mu, logvar (B, latent)
    """
    fn = "reparameterize_kl"
    _check_gaussian(fn, mu, logvar, eps, reduction)
    seed = None
    if eps is None:
        # The kernel draws eps itself (Philox keyed by this seed) and regenerates it in
        # backward: the noise is never stored.
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

__all__ += [
    "affine_coupling",
    "checkerboard_mask",
    "squeeze2d",
    "unsqueeze2d",
    "dequantize",
    "logit_transform",
    "logit_preprocess",
    "bits_per_dim",
]

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
    if not isinstance(mask_parity, numbers.Integral) or isinstance(mask_parity, bool) or mask_parity not in (0, 1):
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
        _checks.check_same_dtype(fn, name, u, "x", x)
    if scale is not None:
        _checks.check_tensor(fn, "scale", scale)
        try:
            broadcasts = torch.broadcast_shapes(scale.shape, s.shape) == s.shape
        except RuntimeError:
            broadcasts = False
        if not broadcasts:
            _checks.fail(fn, f"scale must broadcast to the shape of s {tuple(s.shape)}, got shape {tuple(scale.shape)}")
        _checks.check_same_dtype(fn, "scale", scale, "x", x)
    _checks.check_same_device(fn, "x", x, s=s, t=t, scale=scale)
    return _ops.affine_coupling(x, s, t, scale, mask, mask_parity, bool(inverse))


def checkerboard_mask(
    height: int, width: int, mask_parity: int = 0, *, device=None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(1, 1, H, W): 1 where affine_coupling(mask="checkerboard") transforms ((h + w) % 2 !=
    mask_parity), 0 on the conditioning elements. For building a conditioner's masked input
    (affine_coupling itself needs no mask tensor)."""
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


def dequantize(
    x: torch.Tensor, noise: torch.Tensor | None = None, *, n_bins: int = 256, generator: torch.Generator | None = None
) -> torch.Tensor:
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


def logit_transform(
    x: torch.Tensor, *, alpha: float = 0.05, inverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """RealNVP's logit preprocessing and its log-determinant per sample: (y, logdet).

    y = logit(alpha + (1 - 2 alpha) x) for x in [0, 1]; the inverse maps y back,
    x = (sigmoid(y) - alpha) / (1 - 2 alpha). logdet is summed over the non-batch dims in float32
    (float64 for float64)."""
    fn = "logit_transform"
    _checks.check_floating(fn, "x", x)
    _checks.check_batched(fn, "x", x)
    if not 0 <= alpha < 0.5:
        _checks.fail(fn, f"alpha must be in [0, 0.5), got {alpha}")
    acc = _checks.acc_dtype(x.dtype)
    log_scale = math.log1p(-2 * alpha)
    if inverse:
        # log p + log(1 - p) = -softplus(-y) - softplus(y)
        per = torch.nn.functional.softplus(x) + torch.nn.functional.softplus(-x)
        out = (torch.sigmoid(x) - alpha) / (1 - 2 * alpha)
        return out, (-per - log_scale).flatten(1).sum(1, dtype=acc)
    p = alpha + (1 - 2 * alpha) * x
    log_p, log_q = torch.log(p), torch.log1p(-p)
    return log_p - log_q, (log_scale - log_p - log_q).flatten(1).sum(1, dtype=acc)


def logit_preprocess(
    x: torch.Tensor,
    noise: torch.Tensor | None = None,
    *,
    alpha: float = 0.05,
    n_bins: int = 256,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
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

__all__ += ["instance_norm"]


def _check_channels(fn: str, name: str, t, x: torch.Tensor) -> None:
    if t is None:
        return
    _checks.check_floating(fn, name, t)
    channels = x.shape[1]
    if t.shape != (channels,):
        _checks.fail(fn, f"{name} must have shape ({channels},) (the input's channels), got {tuple(t.shape)}")
    _checks.check_same_device(fn, "input", x, **{name: t})


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

    with activation None, "relu" or "leaky_relu" (negative_slope), fused forward and backward.
    input is (N, C, *spatial), contiguous or channels-last (the output keeps its memory format);
    residual has input's shape. Statistics are computed in float32 (float64 for float64 input).
    With use_input_stats and running_mean/running_var given, those are updated in place as torch
    does (momentum, unbiased variance); with use_input_stats=False they normalize instead.

        y = instance_norm(x, weight=w, bias=b, activation="relu", residual=skip)
    """
    fn = "instance_norm"
    _checks.check_floating(fn, "input", input)
    if input.dim() < 2:
        _checks.fail(
            fn,
            f"input must have at least 2 dimensions (N, C, ...), got {input.dim()}-D input of shape "
            f"{tuple(input.shape)}",
        )
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _check_channels(fn, name, t, input)
    if residual is not None:
        _checks.check_like(fn, "residual", residual, "input", input)
    schema_activation = _checks.check_activation(fn, activation)
    _checks.check_number(fn, "negative_slope", negative_slope)
    _checks.check_number(fn, "eps", eps)
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
        input,
        weight,
        bias,
        None if use_input_stats else running_mean,
        None if use_input_stats else running_var,
        residual,
        bool(use_input_stats),
        float(eps),
        schema_activation,
        float(negative_slope),
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
    _checks.check_same_dtype(fn, "weight", weight, "input", input)
    _checks.check_same_device(fn, "input", input, weight=weight)


def pixel_shuffle(input: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """torch.nn.functional.pixel_shuffle: (*, C*r*r, H, W) -> (*, C, H*r, W*r).

    A 4-D channels_last input is shuffled natively and gives a channels_last output."""
    fn = "pixel_shuffle"
    _check_shuffle_input(fn, input, "upscale_factor", upscale_factor)
    rr = upscale_factor * upscale_factor
    if input.shape[-3] % rr:
        _checks.fail(
            fn, f"input.size(-3) (channels) must be divisible by upscale_factor**2 = {rr}, got {input.shape[-3]}"
        )
    return _ops.pixel_shuffle(input, upscale_factor)


def pixel_unshuffle(input: torch.Tensor, downscale_factor: int) -> torch.Tensor:
    """torch.nn.functional.pixel_unshuffle: (*, C, H*r, W*r) -> (*, C*r*r, H, W)."""
    fn = "pixel_unshuffle"
    _check_shuffle_input(fn, input, "downscale_factor", downscale_factor)
    r = downscale_factor
    if input.shape[-2] % r or input.shape[-1] % r:
        _checks.fail(
            fn,
            f"input's height and width must be divisible by downscale_factor = {r}, got "
            f"{input.shape[-2]} x {input.shape[-1]}",
        )
    return _ops.pixel_unshuffle(input, downscale_factor)


def pixel_shuffle_prelu(input: torch.Tensor, weight: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    """prelu(pixel_shuffle(input, upscale_factor), weight), fused forward and backward and
    bit-exact with torch.nn.PixelShuffle followed by torch.nn.PReLU.

    weight has 1 element or one per output channel (C = input.size(-3) / r**2); a per-channel
    weight needs a 4-D input (N, C*r*r, H, W), where the output's channel dim is dim 1 as
    torch.nn.PReLU expects."""
    fn = "pixel_shuffle_prelu"
    _check_shuffle_input(fn, input, "upscale_factor", upscale_factor)
    rr = upscale_factor * upscale_factor
    if input.shape[-3] % rr:
        _checks.fail(
            fn, f"input.size(-3) (channels) must be divisible by upscale_factor**2 = {rr}, got {input.shape[-3]}"
        )
    channels = input.shape[-3] // rr
    _check_prelu_weight(fn, weight, input, channels, "output channels")
    if weight.numel() > 1 and input.dim() != 4:
        _checks.fail(fn, f"input must be 4-D (N, C*r*r, H, W) with a per-channel weight, got {input.dim()}-D")
    return _ops.pixel_shuffle_prelu(input, weight, upscale_factor)


def prelu(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.prelu: input > 0 ? input : weight * input, with weight shared or one
    per channel (dim 1)."""
    fn = "prelu"
    _checks.check_floating(fn, "input", input)
    channels = input.shape[1] if input.dim() >= 2 else 1
    _check_prelu_weight(fn, weight, input, channels, "input.size(1)")
    # pixel_shuffle_prelu with factor 1: one pass forward and backward.
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

__all__ += [
    "interpolate",
    "fade_in",
    "grad_norm_penalty",
    "r1_penalty",
    "discriminator_loss",
    "generator_loss",
    "pixel_norm",
]


def _per_sample_alpha(fn: str, alpha, like: torch.Tensor, name: str = "alpha") -> torch.Tensor:
    """alpha as the (B,) tensor the op takes, in like's dtype: a number (every sample), a 0-d
    tensor, or one value per sample shaped (B,) or (B, 1, ..., 1)."""
    batch = like.shape[0]
    if not isinstance(alpha, torch.Tensor):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            _checks.fail(fn, f"{name} must be a number, a tensor or None, got {type(alpha).__name__}", TypeError)
        return torch.full((batch,), float(alpha), dtype=like.dtype, device=like.device)
    _checks.check_floating(fn, name, alpha)
    if alpha.device != like.device:
        _checks.fail(fn, f"{name} must be on the device of the images ({like.device}), got {alpha.device}")
    if alpha.dim() == 0:
        return alpha.to(like.dtype).expand(batch)
    if alpha.numel() != batch or alpha.shape[0] != batch:
        _checks.fail(
            fn,
            f"{name} must have one value per sample, shape ({batch},) or ({batch}, 1, ...), got {tuple(alpha.shape)}",
        )
    return alpha.reshape(batch).to(like.dtype)


def interpolate(
    real: torch.Tensor, fake: torch.Tensor, alpha=None, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """WGAN-GP interpolation: x_hat = alpha * real + (1 - alpha) * fake, one alpha per sample.

    alpha: None (drawn uniform in [0, 1) from `generator` or torch's default generator), a number,
    or one value per sample shaped (B,) or (B, 1, ..., 1); it is cast to real's dtype. Computed
    in float32 (float64 for float64); the output keeps real's layout when it is dense and
    batch-major (contiguous, channels_last, ...).

        x_hat = interpolate(real, fake.detach()).requires_grad_(True)
    """
    fn = "interpolate"
    _checks.check_floating(fn, "real", real)
    _checks.check_batched(fn, "real", real)
    _checks.check_like(fn, "fake", fake, "real", real)
    if alpha is None:
        _checks.check_generator(fn, generator, real.device)
        alpha = torch.rand(real.shape[0], dtype=real.dtype, device=real.device, generator=generator)
    else:
        alpha = _per_sample_alpha(fn, alpha, real)
    return _ops.interpolate(real, fake, alpha)


def fade_in(new: torch.Tensor, old: torch.Tensor, alpha) -> torch.Tensor:
    """Progressive GAN fade-in when doubling the resolution: alpha * new + (1 - alpha) * old, with
    `old` the upsampled (or downsampled) output of the previous stage and alpha ramping 0 -> 1
    (a number, or a tensor as in `interpolate`). The same fused op as `interpolate`."""
    fn = "fade_in"
    _checks.check_floating(fn, "new", new)
    _checks.check_batched(fn, "new", new)
    _checks.check_like(fn, "old", old, "new", new)
    return _ops.interpolate(new, old, _per_sample_alpha(fn, alpha, new))


def _check_penalty(fn: str, grads, target, weight, one_sided) -> None:
    _checks.check_floating(fn, "grads", grads)
    _checks.check_batched(fn, "grads", grads)
    _checks.check_number(fn, "target", target)
    _checks.check_number(fn, "weight", weight)
    if not (target >= 0 and target != float("inf")):
        _checks.fail(fn, f"target must be a finite number >= 0, got {target}")
    if weight != weight or abs(weight) == float("inf"):
        _checks.fail(fn, f"weight must be a finite number, got {weight}")
    if not isinstance(one_sided, bool):
        _checks.fail(fn, f"one_sided must be a bool, got {type(one_sided).__name__}", TypeError)


def _penalty_grad_in_forward(grads: torch.Tensor) -> bool:
    """Whether the penalty's forward also writes d(penalty)/d(grads) for the backward."""
    # Written in the same pass and returned as is by a backward whose upstream gradient is
    # exactly 1: only when a backward will need it, only on CPU (where that check on the
    # upstream gradient is made), and not under torch.compile (its traced backward recomputes it).
    return (
        grads.requires_grad
        and torch.is_grad_enabled()
        and grads.device.type == "cpu"
        and not torch.compiler.is_compiling()
    )


def grad_norm_penalty(
    grads: torch.Tensor, *, target: float = 1.0, weight: float = 10.0, one_sided: bool = False
) -> torch.Tensor:
    """The WGAN-GP penalty on given gradients: weight * mean_b((||g_b||_2 - target)**2).

    The norm is over every non-batch dim (dim 0 is the batch), computed as sqrt(sum g**2 + 1e-12)
    in float32 (float64 for float64), so a zero gradient gives no NaN. one_sided=True penalizes
    max(0, ||g|| - target)**2 only (Petzka et al.). target=0 penalizes sum g**2 itself, with no
    sqrt (see r1_penalty). The backward is differentiable: `grads` from
    autograd.grad(create_graph=True) train the critic through it.

        (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        loss = loss + grad_norm_penalty(g)
    """
    _check_penalty("grad_norm_penalty", grads, target, weight, one_sided)
    return _ops.grad_penalty(grads, float(target), float(weight), one_sided, _penalty_grad_in_forward(grads))[0]


def r1_penalty(grads: torch.Tensor, gamma: float) -> torch.Tensor:
    """The R1 penalty (Mescheder et al.) on the critic's gradients at real data:
    gamma / 2 * mean_b(sum g_b**2): grad_norm_penalty with target=0 and weight=gamma/2."""
    _check_penalty("r1_penalty", grads, 0.0, gamma, False)
    return _ops.grad_penalty(grads, 0.0, float(gamma) / 2, False, _penalty_grad_in_forward(grads))[0]


# GAN losses take the critic's raw outputs (logits), shaped (B,) or (B, 1), and average over
# the batch. They are a few torch ops each: at these sizes a fused op costs more in dispatch
# than it saves, so fastgen writes them out exactly (softplus form: no log(sigmoid) underflow).
_D_LOSSES = ("bce", "lsgan", "hinge", "wasserstein")
_G_LOSSES = ("nonsaturating", "minimax", "lsgan", "hinge", "wasserstein")


def _check_logits(fn: str, name: str, t) -> None:
    _checks.check_floating(fn, name, t)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """The discriminator's (critic's) loss on its outputs for real and generated samples:
    "bce" -log D(x) - log(1 - D(G(z))) as softplus(-real) + softplus(fake); "lsgan"
    0.5 (real - 1)**2 + 0.5 fake**2; "hinge" relu(1 - real) + relu(1 + fake); "wasserstein"
    fake - real. Each term is averaged over its batch."""
    fn = "discriminator_loss"
    _check_logits(fn, "real_logits", real_logits)
    _check_logits(fn, "fake_logits", fake_logits)
    if kind == "bce":
        return torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * (real_logits - 1).square().mean() + 0.5 * fake_logits.square().mean()
    if kind == "hinge":
        return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
    if kind == "wasserstein":
        return fake_logits.mean() - real_logits.mean()
    _checks.fail(fn, f"kind must be one of {_D_LOSSES}, got {kind!r}")


def generator_loss(fake_logits: torch.Tensor, kind: str = "nonsaturating") -> torch.Tensor:
    """The generator's loss on the critic's outputs for generated samples: "nonsaturating"
    -log D(G(z)) = softplus(-fake); "minimax" log(1 - D(G(z))) = -softplus(fake); "lsgan"
    0.5 (fake - 1)**2; "hinge" and "wasserstein" -fake. Averaged over the batch."""
    fn = "generator_loss"
    _check_logits(fn, "fake_logits", fake_logits)
    if kind == "nonsaturating":
        return torch.nn.functional.softplus(-fake_logits).mean()
    if kind == "minimax":
        return -torch.nn.functional.softplus(fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * (fake_logits - 1).square().mean()
    if kind in ("hinge", "wasserstein"):
        return -fake_logits.mean()
    _checks.fail(fn, f"kind must be one of {_G_LOSSES}, got {kind!r}")


def _check_pixel_norm_eps(fn: str, eps) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        _checks.fail(fn, f"eps must be a number >= 0, got {eps!r}")


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Progressive GAN pixel norm: x * rsqrt(mean over channels (dim 1) of x**2 + eps), for x of
    shape (N, C, ...) ((N, C) normalizes latent vectors). Accumulates in float32; contiguous and
    channels_last inputs keep their layout."""
    fn = "pixel_norm"
    _checks.check_floating(fn, "x", x)
    if x.dim() < 2:
        _checks.fail(fn, f"x must have a batch and a channel dimension (N, C, ...), got {x.dim()}-D")
    _check_pixel_norm_eps(fn, eps)
    return _ops.pixel_norm(x, float(eps))


# =========================================================================================
# Face recognition and Siamese losses (csrc/margin_softmax.cpp)
# =========================================================================================

__all__ += ["margin_cross_entropy"]


def _check_labels(fn: str, labels, embeddings: torch.Tensor) -> None:
    """labels (B,) of an integer dtype, on the device of embeddings (B, ...)."""
    _checks.check_tensor(fn, "labels", labels)
    if labels.dtype not in _checks.INTEGER_DTYPES:
        _checks.fail(fn, f"labels must be an integer tensor, got {labels.dtype}", TypeError)
    batch = embeddings.shape[0]
    if labels.shape != (batch,):
        _checks.fail(fn, f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    _checks.check_same_device(fn, "embeddings", embeddings, labels=labels)


def _check_margin_args(fn: str, embeddings, weight, labels, s, reduction) -> None:
    _checks.check_floating(fn, "embeddings", embeddings)
    if embeddings.dim() != 2:
        _checks.fail(fn, f"embeddings must be 2-D (batch, embedding_size), got {embeddings.dim()}-D")
    _checks.check_tensor(fn, "weight", weight)
    if weight.dim() != 2:
        _checks.fail(fn, f"weight must be 2-D (num_classes, embedding_size), got {weight.dim()}-D")
    if weight.shape[1] != embeddings.shape[1]:
        _checks.fail(
            fn, f"weight must have embedding size {embeddings.shape[1]} (the embeddings' size), got {weight.shape[1]}"
        )
    if weight.shape[0] == 0:
        _checks.fail(fn, "weight must have at least one class, got 0")
    _checks.check_same_dtype(fn, "weight", weight, "embeddings", embeddings)
    _checks.check_same_device(fn, "embeddings", embeddings, weight=weight)
    _check_labels(fn, labels, embeddings)
    if not (isinstance(s, (int, float)) and s > 0 and math.isfinite(s)):
        _checks.fail(fn, f"s must be a positive finite scale, got {s!r}")
    _checks.check_reduction(fn, reduction)


def _margin_loss_from_rows(
    lse: torch.Tensor,
    target_logit: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int,
    reduction: str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Cross-entropy from the per-row log-sum-exp and target logit (both 0 on ignored rows):
    loss[b] = lse[b] - target_logit[b]; "mean" divides by the number of rows not ignored (NaN
    when there are none, as F.cross_entropy)."""
    per_row = lse - target_logit
    if reduction == "none":
        return per_row.to(dtype)
    total = per_row.sum()
    if reduction == "mean":
        total = total / (labels != ignore_index).sum()
    return total.to(dtype)


def margin_cross_entropy(
    embeddings: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    s: float = 64.0,
    m1: float = 1.0,
    m2: float = 0.5,
    m3: float = 0.0,
    easy_margin: bool = False,
    reduction: str = "mean",
    ignore_index: int = -100,
    straight_through: bool = False,
) -> torch.Tensor:
    """Softmax cross-entropy over cosine logits with a margin on the target class.

    cos = normalize(embeddings) @ normalize(weight).T; the logit of class c is s * cos, the
    target's is s * (cos(m1 * theta + m2) - m3) with theta = acos(cos): ArcFace is
    (m1, m2, m3) = (1, m, 0), CosFace (1, 0, m), SphereFace (m, 0, 0) (with the monotonic
    extension (-1)^k cos(m1 theta) - 2k past pi). When theta + m2 > pi (m1 == 1) the target
    logit falls back to cos - m2 sin(m2); with easy_margin the margin applies only where
    cos > 0. The target cosine is clamped away from +-1 before acos (by 1e-7, by float64's
    epsilon in float64), and the gradient is the exact one through the margin (InsightFace's
    2022 rule).

    straight_through=True gives InsightFace's current arcface_torch rule instead: the target
    logit is s * (cos(m1 * theta + m2) - m3) for every theta (no fallback past pi, no monotonic
    extension), and the margin is a constant in backward (d target / d cos = s).

    embeddings (B, E), weight (C, E) (the class centers), labels (B,) integer in [0, C) or
    ignore_index. Computes in float32 (float64 for float64 inputs); reduction as
    F.cross_entropy's ("mean" over the rows not ignored).

        loss = margin_cross_entropy(emb, centers, labels, s=64.0, m2=0.5)   # ArcFace
    """
    fn = "margin_cross_entropy"
    _check_margin_args(fn, embeddings, weight, labels, s, reduction)
    for name, value in (("m1", m1), ("m2", m2), ("m3", m3)):
        _checks.check_number(fn, name, value)
    # The op walks the classes in chunks with an online log-sum-exp: no (B, C) logits are kept.
    lse, target_logit, _ = _ops.margin_softmax(
        embeddings,
        weight,
        labels,
        0,
        weight.shape[0],
        float(s),
        float(m1),
        float(m2),
        float(m3),
        bool(easy_margin),
        int(ignore_index),
        bool(straight_through),
    )
    # Under autocast embeddings and weight may differ: the op computed in the wider of the two.
    dtype = torch.promote_types(embeddings.dtype, weight.dtype)
    return _margin_loss_from_rows(lse, target_logit, labels, ignore_index, reduction, dtype)


__all__ += ["contrastive_loss", "triplet_margin_loss", "batch_hard_triplet_loss"]


def _check_pairs(fn: str, names, tensors) -> None:
    """Embedding tensors of one shape (B, D), dtype and device."""
    first = tensors[0]
    _checks.check_floating(fn, names[0], first)
    if first.dim() != 2:
        _checks.fail(fn, f"{names[0]} must be 2-D (batch, embedding_size), got {first.dim()}-D")
    for name, t in zip(names[1:], tensors[1:]):
        _checks.check_like(fn, name, t, names[0], first)


def contrastive_loss(
    x1: torch.Tensor,
    x2: torch.Tensor,
    y: torch.Tensor,
    margin: float = 1.0,
    *,
    eps: float = 1e-6,
    reduction: str = "mean",
) -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun): y * d**2 + (1 - y) * max(margin - d, 0)**2 per
    pair, with d = F.pairwise_distance(x1, x2, eps=eps) and y = 1 for a pair of the same class.

    x1, x2 (B, D); y (B,) of 0/1 (bool, integer or floating: a floating y that requires grad
    gets its gradient). The distance's gradient is finite at zero."""
    fn = "contrastive_loss"
    _check_pairs(fn, ("x1", "x2"), (x1, x2))
    _checks.check_tensor(fn, "y", y)
    if y.shape != (x1.shape[0],):
        _checks.fail(fn, f"y must have shape ({x1.shape[0]},), got {tuple(y.shape)}")
    _checks.check_same_device(fn, "x1", x1, y=y)
    _checks.check_reduction(fn, reduction)
    _checks.check_number(fn, "margin", margin)
    _checks.check_number(fn, "eps", eps)
    return _ops.contrastive_loss(x1, x2, y, float(margin), float(eps), reduction)


def triplet_margin_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 1.0,
    p: float = 2,
    eps: float = 1e-6,
    swap: bool = False,
    size_average=None,
    reduce=None,
    reduction: str = "mean",
) -> torch.Tensor:
    """torch.nn.functional.triplet_margin_loss, fused: max(margin + d(a, p) - d(a, n), 0) with
    d(x, y) = ||x - y + eps||_p (and d(a, n) replaced by min(d(a, n), d(p, n)) when swap).

    Inputs (B, D), or (D,) for one triplet; all three of one shape (torch broadcasts, fastgen
    does not). p > 0, inf included."""
    fn = "triplet_margin_loss"
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    names = ("anchor", "positive", "negative")
    for name, t in zip(names, (anchor, positive, negative)):
        _checks.check_floating(fn, name, t)
        if t.dim() not in (1, 2):
            _checks.fail(fn, f"{name} must be 1-D or 2-D (batch, embedding_size), got {t.dim()}-D")
    unbatched = anchor.dim() == 1
    if unbatched:
        anchor, positive, negative = anchor[None], positive[None], negative[None]
    _check_pairs(fn, names, (anchor, positive, negative))
    for name, value in (("margin", margin), ("p", p), ("eps", eps)):
        _checks.check_number(fn, name, value)
    if margin <= 0:  # torch refuses it too (NaN passes, as in torch)
        _checks.fail(fn, f"margin must be greater than 0, got {margin}")
    if not p > 0:
        _checks.fail(fn, f"p must be positive, got {p!r}")
    _checks.check_reduction(fn, reduction)
    loss = _ops.triplet_margin_loss(
        anchor, positive, negative, float(margin), float(p), float(eps), bool(swap), reduction
    )
    return loss[0] if unbatched and reduction == "none" else loss


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.3,
    squared: bool = False,
    *,
    reduction: str = "mean",
) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe): for each anchor, relu(d(a, p) - d(a, n) +
    margin) with its farthest positive (same label, not itself) and nearest negative in the
    batch, d the Euclidean distance ||e_i - e_j|| (squared=True: its square). The distance's
    gradient is 0 at 0 (identical points give no NaN).

    embeddings (B, D), labels (B,) integer. "mean" averages over the anchors that have a
    positive and a negative (0 when none has), "none" gives (B,) with 0 for the others."""
    fn = "batch_hard_triplet_loss"
    _check_pairs(fn, ("embeddings",), (embeddings,))
    _check_labels(fn, labels, embeddings)
    _checks.check_reduction(fn, reduction)
    _checks.check_number(fn, "margin", margin)
    # The op mines while it computes the distances, as exact differences (no Gram-matrix
    # cancellation) and without a B x B matrix.
    return _ops.batch_hard_triplet_loss(embeddings, labels, float(margin), bool(squared), reduction)[0]
