"""GAN training recipes on top of fastgen's fused ops: the WGAN-GP gradient penalty, the R1
penalty and WGAN weight clipping (exported as fastgen.gradient_penalty, fastgen.r1_regularization
and fastgen.clip_weights_)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F

__all__ = ["gradient_penalty", "r1_regularization", "clip_weights_"]


def _input_gradient(fn: str, critic: Callable, x: torch.Tensor, scaler) -> torch.Tensor:
    """d(sum critic(x))/dx with create_graph=True (x a leaf that requires grad), unscaled when a
    torch.amp.GradScaler is given: the critic's output is scaled before autograd.grad (so float16
    gradients do not underflow) and the gradient is unscaled before any norm is taken."""
    if not callable(critic):
        _checks.fail(fn, f"critic must be callable (a module or a function), got {type(critic).__name__}", TypeError)
    out = critic(x)
    if not isinstance(out, torch.Tensor):
        _checks.fail(fn, f"critic must return a tensor, got {type(out).__name__}", TypeError)
    out = out.sum()
    if scaler is not None:
        out = scaler.scale(out)
    (grads,) = torch.autograd.grad(out, x, create_graph=True)
    if scaler is not None:
        grads = grads * (1.0 / scaler.get_scale())
    return grads


def gradient_penalty(
    critic: Callable,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    target: float = 1.0,
    alpha=None,
    generator: torch.Generator | None = None,
    scaler=None,
) -> torch.Tensor:
    """The WGAN-GP gradient penalty (Gulrajani et al.) of `critic` at random interpolates of real
    and fake samples:

        x_hat = alpha * real + (1 - alpha) * fake          (fused; alpha ~ U[0, 1) per sample)
        g     = d critic(x_hat) / d x_hat                   (autograd.grad, create_graph=True)
        pen   = weight * mean_b((||g_b|| - target)**2)      (fused, NaN-free at g = 0)

    Add the result to the critic's loss and call backward: the penalty trains the critic through
    its double backward. real and fake are detached (the penalty never reaches the generator).
    `critic` is any callable image -> score (for a conditional critic, a lambda holding the
    labels). `alpha` and `generator` are as in fastgen.functional.interpolate.

    Mixed precision: under torch.autocast with float16 and a torch.amp.GradScaler, pass
    `scaler=`: the critic's output is scaled before taking the gradient and the gradient is
    unscaled (multiplied by 1 / scale) before the norm, as PyTorch's AMP recipe for gradient
    penalties prescribes. With bfloat16 autocast no scaler is needed.
    """
    fn = "gradient_penalty"
    _checks.check_tensor(fn, "real", real)
    _checks.check_tensor(fn, "fake", fake)
    x_hat = F.interpolate(real.detach(), fake.detach(), alpha, generator=generator).requires_grad_(True)
    grads = _input_gradient(fn, critic, x_hat, scaler)
    return F.grad_norm_penalty(grads, target=target, weight=weight)


def r1_regularization(critic: Callable, real: torch.Tensor, gamma: float, *, scaler=None) -> torch.Tensor:
    """The R1 penalty (Mescheder et al., 2018): gamma / 2 * mean_b(||d critic(x_b) / d x_b||**2)
    at real samples x, to add to the discriminator's loss. `scaler` as in gradient_penalty."""
    fn = "r1_regularization"
    _checks.check_tensor(fn, "real", real)
    x = real.detach().requires_grad_(True)
    return F.r1_penalty(_input_gradient(fn, critic, x, scaler), gamma)


@torch.no_grad()
def clip_weights_(module_or_params: nn.Module | Iterable[torch.Tensor], clip: float = 0.01) -> None:
    """WGAN weight clipping (Arjovsky et al.): clamps every parameter of a module (or an iterable
    of tensors, or one tensor) to [-clip, clip] in place.

        clip_weights_(critic, 0.01)        # after each critic step
    """
    fn = "clip_weights_"
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip >= 0:
        _checks.fail(fn, f"clip must be a number >= 0, got {clip!r}")
    if isinstance(module_or_params, nn.Module):
        params = list(module_or_params.parameters())
    elif isinstance(module_or_params, torch.Tensor):
        params = [module_or_params]
    else:
        params = list(module_or_params)
        for i, p in enumerate(params):
            _checks.check_tensor(fn, f"params[{i}]", p)
    if params:
        # torch's multi-tensor kernels: one call for all the parameters, not a per-tensor loop.
        torch._foreach_clamp_min_(params, -float(clip))
        torch._foreach_clamp_max_(params, float(clip))
