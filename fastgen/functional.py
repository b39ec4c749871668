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


def _margin_loss_from_rows(lse: torch.Tensor, target_logit: torch.Tensor, labels: torch.Tensor, ignore_index: int,
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
    return _margin_loss_from_rows(lse, target_logit, labels, ignore_index, reduction, embeddings.dtype)


__all__ += ["contrastive_loss", "triplet_margin_loss", "batch_hard_triplet_loss"]


def _check_pairs(fn: str, names, tensors) -> None:
    """Embedding tensors of one shape (B, D), dtype and device."""
    first = tensors[0]
    _checks.check_floating(fn, names[0], first)
    if first.dim() != 2:
        _checks.fail(fn, f"{names[0]} must be 2-D (batch, embedding_size), got {first.dim()}-D")
    for name, t in zip(names[1:], tensors[1:]):
        _checks.check_like(fn, name, t, names[0], first)


def contrastive_loss(x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor, margin: float = 1.0, *, eps: float = 1e-6,
                     reduction: str = "mean") -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun): y * d**2 + (1 - y) * max(margin - d, 0)**2 per
    pair, with d = F.pairwise_distance(x1, x2, eps=eps) and y = 1 for a pair of the same class.

    x1, x2 (B, D); y (B,) of 0/1 (bool, integer or floating: a floating y that requires grad
    gets its gradient). One pass forward and one backward; the distance's gradient is safe at
    zero."""
    fn = "contrastive_loss"
    _check_pairs(fn, ("x1", "x2"), (x1, x2))
    _checks.check_tensor(fn, "y", y)
    if y.shape != (x1.shape[0],):
        _checks.fail(fn, f"y must have shape ({x1.shape[0]},), got {tuple(y.shape)}")
    if y.device != x1.device:
        _checks.fail(fn, f"y must be on the device of x1 ({x1.device}), got {y.device}")
    _checks.check_reduction(fn, reduction)
    return _ops.contrastive_loss(x1, x2, y, float(margin), float(eps), reduction)


def triplet_margin_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0,
                        p: float = 2, eps: float = 1e-6, swap: bool = False, size_average=None, reduce=None,
                        reduction: str = "mean") -> torch.Tensor:
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
    if not p > 0:
        _checks.fail(fn, f"p must be positive, got {p!r}")
    _checks.check_reduction(fn, reduction)
    loss = _ops.triplet_margin_loss(anchor, positive, negative, float(margin), float(p), float(eps), bool(swap),
                                    reduction)
    return loss[0] if unbatched and reduction == "none" else loss


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3,
                            squared: bool = False, *, reduction: str = "mean") -> torch.Tensor:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe): for each anchor, relu(d(a, p) - d(a, n) +
    margin) with its farthest positive (same label, not itself) and nearest negative, mined while
    the pairwise distances ||e_i - e_j|| (squared=True: their squares) are computed, without a
    B x B matrix. Distances are exact differences (no Gram-matrix cancellation) and their
    gradient is 0 at 0 (identical points give no NaN).

    "mean" averages over the anchors that have a positive and a negative (0 when none has),
    "none" gives (B,) with 0 for the others."""
    fn = "batch_hard_triplet_loss"
    _check_pairs(fn, ("embeddings",), (embeddings,))
    _check_labels(fn, labels, embeddings.shape[0], embeddings.device)
    _checks.check_reduction(fn, reduction)
    return _ops.batch_hard_triplet_loss(embeddings, labels, float(margin), bool(squared), reduction)[0]
