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

__all__ += ["margin_cross_entropy"]

import math  # noqa: E402

_INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def _check_labels(fn: str, labels, batch: int, device: torch.device) -> None:
    _checks.check_tensor(fn, "labels", labels)
    if labels.dtype not in _INTEGER_DTYPES:
        _checks.fail(fn, f"labels must be an integer tensor, got {labels.dtype}", TypeError)
    if labels.shape != (batch,):
        _checks.fail(fn, f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.device != device:
        _checks.fail(fn, f"labels must be on the device of embeddings ({device}), got {labels.device}")


def _check_margin_args(fn: str, embeddings, weight, labels, s, reduction) -> None:
    _checks.check_floating(fn, "embeddings", embeddings)
    if embeddings.dim() != 2:
        _checks.fail(fn, f"embeddings must be 2-D (batch, embedding_size), got {embeddings.dim()}-D")
    _checks.check_tensor(fn, "weight", weight)
    if weight.dim() != 2:
        _checks.fail(fn, f"weight must be 2-D (num_classes, embedding_size), got {weight.dim()}-D")
    if weight.shape[1] != embeddings.shape[1]:
        _checks.fail(fn, f"weight must have embedding size {embeddings.shape[1]} (the embeddings' size), "
                         f"got {weight.shape[1]}")
    if weight.shape[0] == 0:
        _checks.fail(fn, "weight must have at least one class, got 0")
    if weight.dtype != embeddings.dtype:
        _checks.fail(fn, f"weight must have the dtype of embeddings ({embeddings.dtype}), got {weight.dtype}", TypeError)
    if weight.device != embeddings.device:
        _checks.fail(fn, f"weight must be on the device of embeddings ({embeddings.device}), got {weight.device}")
    _check_labels(fn, labels, embeddings.shape[0], embeddings.device)
    if not (isinstance(s, (int, float)) and s > 0 and math.isfinite(s)):
        _checks.fail(fn, f"s must be a positive finite scale, got {s!r}")
    _checks.check_reduction(fn, reduction)


def margin_loss_from_rows(lse: torch.Tensor, target_logit: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                          reduction: str, dtype: torch.dtype) -> torch.Tensor:
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
) -> torch.Tensor:
    """Softmax cross-entropy over cosine logits with a margin on the target class.

    cos = normalize(embeddings) @ normalize(weight).T; the logit of class c is s * cos, the
    target's is s * (cos(m1 * theta + m2) - m3) with theta = acos(cos): ArcFace is
    (m1, m2, m3) = (1, m, 0), CosFace (1, 0, m), SphereFace (m, 0, 0) (with the monotonic
    extension (-1)^k cos(m1 theta) - 2k past pi). When theta + m2 > pi (m1 == 1) the target
    logit falls back to cos - m2 sin(m2); with easy_margin the margin applies only where
    cos > 0. The target cosine is clamped away from +-1 before acos, and the gradient is the
    exact one through the margin.

    embeddings (B, E), weight (C, E) (the class centers), labels (B,) integer in [0, C) or
    ignore_index. Classes are processed in chunks with an online log-sum-exp: no (B, C)
    tensor is kept for backward. Computes in float32 (float64 for float64 inputs).
    """
    fn = "margin_cross_entropy"
    _check_margin_args(fn, embeddings, weight, labels, s, reduction)
    lse, target_logit, _ = _ops.margin_softmax(embeddings, weight, labels, 0, weight.shape[0], float(s), float(m1),
                                               float(m2), float(m3), bool(easy_margin), int(ignore_index))
    return margin_loss_from_rows(lse, target_logit, labels, ignore_index, reduction, embeddings.dtype)
