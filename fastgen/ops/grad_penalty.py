"""GAN training core: fake impls and the CUDA (Triton)
kernels for fastgen::interpolate, fastgen::grad_penalty and their backward ops.

The math lives in csrc/grad_penalty.cpp. Both backward ops are linear in their incoming
gradient, so their own backward (csrc/autograd/grad_penalty.cpp) is short: it is what lets the
penalty sit inside a critic whose input gradient was taken with create_graph=True, and what
gradgradcheck checks.
"""
from __future__ import annotations

import math

import torch

from fastgen._checks import check_same_device
from fastgen._autograd import register_autograd

from fastgen._layout import batch_major

_ops = torch.ops.fastgen


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of the kernels (and of the norms output)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_batched_floating(op: str, name: str, t) -> None:
    torch._check(t.dim() >= 1, lambda: f"fastgen.{op}: {name} must have a batch dimension (at least 1-D), got a 0-d tensor")
    torch._check(t.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {t.dtype}")


def _check_like(op: str, name: str, t, ref_name: str, ref) -> None:
    torch._check(t.shape == ref.shape, lambda: f"fastgen.{op}: {name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
    torch._check(t.dtype == ref.dtype, lambda: f"fastgen.{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    torch._check(t.device == ref.device, lambda: f"fastgen.{op}: {name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def _check_per_sample(op: str, name: str, v, x, dtype, x_name: str) -> None:
    torch._check(v.dim() == 1 and v.shape[0] == x.shape[0], lambda: f"fastgen.{op}: {name} must have shape ({x.shape[0]},) (one value per sample of {x_name}), got {tuple(v.shape)}")
    torch._check(v.dtype == dtype, lambda: f"fastgen.{op}: {name} must have dtype {dtype}, got {v.dtype}")
    torch._check(v.device == x.device, lambda: f"fastgen.{op}: {name} must be on the device of {x_name} ({x.device}), got {v.device}")


def check_interpolate_args(real, fake, alpha) -> None:
    """The checks csrc/grad_penalty.cpp makes, for the fake impls and the Triton launchers."""
    op = "interpolate"
    _check_batched_floating(op, "real", real)
    _check_like(op, "fake", fake, "real", real)
    _check_per_sample(op, "alpha", alpha, real, real.dtype, "real")


def check_interpolate_backward_args(grad, real, fake, alpha, output_mask) -> None:
    op = "interpolate_backward"
    _check_batched_floating(op, "grad", grad)
    _check_per_sample(op, "alpha", alpha, grad, grad.dtype, "grad")
    torch._check(not output_mask[2] or (real is not None and fake is not None),
                 lambda: f"fastgen.{op}: the gradient of alpha needs real and fake")
    if real is not None:
        _check_like(op, "real", real, "grad", grad)
    if fake is not None:
        _check_like(op, "fake", fake, "grad", grad)


def check_penalty_args(op: str, grads, target: float, weight: float) -> None:
    _check_batched_floating(op, "grads", grads)
    torch._check(math.isfinite(target) and target >= 0, lambda: f"fastgen.{op}: target must be a finite number >= 0, got {target}")
    torch._check(math.isfinite(weight), lambda: f"fastgen.{op}: weight must be a finite number, got {weight}")


def check_penalty_backward_args(grad_penalty, grad_norms, grads, norms, target, weight) -> None:
    op = "grad_penalty_backward"
    check_penalty_args(op, grads, target, weight)
    acc = acc_dtype(grads.dtype)
    _check_per_sample(op, "norms", norms, grads, acc, "grads")
    if grad_penalty is not None:
        torch._check(grad_penalty.numel() == 1, lambda: f"fastgen.{op}: grad_penalty must be a scalar (the gradient of the penalty), got shape {tuple(grad_penalty.shape)}")
    if grad_norms is not None:
        _check_per_sample(op, "grad_norms", grad_norms, grads, acc, "grads")


# ---------------------------------------------------------------------------------------
# fake impls


@torch.library.register_fake("fastgen::interpolate")
def _interpolate_fake(real, fake, alpha):
    check_interpolate_args(real, fake, alpha)
    check_same_device("interpolate", "real", real, fake=fake, alpha=alpha)
    return torch.empty_like(batch_major(real))


@torch.library.register_fake("fastgen::interpolate_backward")
def _interpolate_backward_fake(grad, real, fake, alpha, output_mask):
    check_interpolate_backward_args(grad, real, fake, alpha, output_mask)
    check_same_device("interpolate_backward", "grad", grad, real=real, fake=fake, alpha=alpha)
    layout = batch_major(grad)
    return (torch.empty_like(layout) if output_mask[0] else grad.new_empty((0,)),
            torch.empty_like(layout) if output_mask[1] else grad.new_empty((0,)),
            alpha.new_empty((grad.shape[0],)) if output_mask[2] else alpha.new_empty((0,)))


@torch.library.register_fake("fastgen::grad_penalty")
def _grad_penalty_fake(grads, target, weight, one_sided, with_grad):
    check_penalty_args("grad_penalty", grads, target, weight)
    d_grads = torch.empty_like(batch_major(grads)) if with_grad else grads.new_empty((0,))
    return grads.new_empty(()), grads.new_empty((grads.shape[0],), dtype=acc_dtype(grads.dtype)), d_grads


@torch.library.register_fake("fastgen::grad_penalty_backward")
def _grad_penalty_backward_fake(grad_penalty, grad_norms, grads, norms, target, weight, one_sided):
    check_penalty_backward_args(grad_penalty, grad_norms, grads, norms, target, weight)
    check_same_device("grad_penalty_backward", "grads", grads, grad_penalty=grad_penalty, grad_norms=grad_norms,
                      norms=norms)
    return torch.empty_like(batch_major(grads))


# ---------------------------------------------------------------------------------------
# autograd: interpolate


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), to broadcast against `like`."""
    return v.reshape((like.shape[0],) + (1,) * (like.dim() - 1))


def _row_sums(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """sum over the non-batch dims, accumulated in `dtype`: (B, ...) -> (B,)."""
    return t.reshape(t.shape[0], -1).sum(1, dtype=dtype)


def _setup_interpolate(ctx, inputs, output):
    real, fake, alpha = inputs
    ctx.alpha_grad = ctx.needs_input_grad[2]
    ctx.save_for_backward(real if ctx.alpha_grad else None, fake if ctx.alpha_grad else None, alpha)


def _interpolate_backward(ctx, grad):
    real, fake, alpha = ctx.saved_tensors
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.alpha_grad]
    grad_real, grad_fake, grad_alpha = _ops.interpolate_backward(grad, real, fake, alpha, mask)
    return (grad_real if mask[0] else None, grad_fake if mask[1] else None, grad_alpha if mask[2] else None)


def _setup_interpolate_backward(ctx, inputs, output):
    grad, real, fake, alpha, output_mask = inputs
    ctx.set_materialize_grads(False)
    ctx.mask = list(output_mask)
    ctx.save_for_backward(grad, real, fake, alpha)


def _interpolate_backward_backward(ctx, gg_real, gg_fake, gg_alpha):
    """VJP of (grad_real, grad_fake, grad_alpha) = (a g, (1 - a) g, sum_j g (real - fake))."""
    grad, real, fake, alpha = ctx.saved_tensors
    gg_real = gg_real if ctx.mask[0] else None
    gg_fake = gg_fake if ctx.mask[1] else None
    gg_alpha = gg_alpha if ctx.mask[2] else None
    a = _per_row(alpha, grad)
    acc = acc_dtype(grad.dtype)
    d_grad = d_real = d_fake = d_alpha = None
    terms, alpha_terms = [], []
    if gg_real is not None:
        terms.append(a * gg_real)
        alpha_terms.append(_row_sums(grad * gg_real, acc))
    if gg_fake is not None:
        terms.append((1 - a) * gg_fake)
        alpha_terms.append(-_row_sums(grad * gg_fake, acc))
    if gg_alpha is not None:
        k = _per_row(gg_alpha, grad)
        terms.append(k * (real - fake))
        d_real = k * grad
        d_fake = -d_real
    if terms:
        d_grad = sum(terms)
    if alpha_terms:
        d_alpha = sum(alpha_terms).to(alpha.dtype)
    return d_grad, d_real, d_fake, d_alpha, None


register_autograd("fastgen::interpolate", _interpolate_backward, setup_context=_setup_interpolate)
register_autograd("fastgen::interpolate_backward", _interpolate_backward_backward,
                                setup_context=_setup_interpolate_backward)


# ---------------------------------------------------------------------------------------
# autograd: grad_penalty


def _setup_grad_penalty(ctx, inputs, output):
    grads, target, weight, one_sided, with_grad = inputs
    ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not zeros
    ctx.mark_non_differentiable(output[2])
    ctx.args = (target, weight, one_sided)
    ctx.save_for_backward(grads, output[1], output[2] if with_grad else None)


def _grad_penalty_backward(ctx, grad_penalty, grad_norms, _):
    grads, norms, d_grads = ctx.saved_tensors
    if grad_penalty is None and grad_norms is None:
        return None, None, None, None, None
    if (d_grads is not None and grad_norms is None and not torch.is_grad_enabled()
            and grad_penalty.device.type == "cpu" and not torch.compiler.is_compiling()
            and grad_penalty.item() == 1.0):
        # The forward already computed d(penalty)/d(grads) for an upstream gradient of 1 (the
        # penalty added to a loss). With create_graph=True the op below keeps it differentiable.
        return d_grads, None, None, None, None
    return _ops.grad_penalty_backward(grad_penalty, grad_norms, grads, norms, *ctx.args), None, None, None, None
def _setup_grad_penalty_backward(ctx, inputs, output):
    grad_penalty, grad_norms, grads, norms, target, weight, one_sided = inputs
    ctx.args = (target, weight, one_sided)
    ctx.save_for_backward(grad_penalty, grad_norms, grads, norms)


def _grad_penalty_backward_backward(ctx, gg):
    """VJP of out = c[b] * grads[b], where (n = norms, h = n - target, clipped at 0 when one-sided)
        c[b] = grad_penalty * k * h / n + grad_norms[b] / n,   k = 2 weight / B.
    out is linear in grads with these coefficients, so d/d(grads) is the same op applied to gg;
    the coefficients take r[b] = sum_j gg[b, j] grads[b, j]."""
    grad_penalty, grad_norms, grads, norms = ctx.saved_tensors
    target, weight, one_sided = ctx.args
    d_gp = d_gn = d_grads = d_norms = None
    if gg is None:
        return d_gp, d_gn, d_grads, d_norms, None, None, None
    d_grads = _ops.grad_penalty_backward(grad_penalty, grad_norms, gg, norms, target, weight, one_sided)
    r = _row_sums(gg * grads, norms.dtype)
    h = norms - target
    if one_sided:
        h = h.clamp_min(0)
    d_norms_terms = []
    if grad_penalty is not None:
        k = 2.0 * weight / grads.shape[0]
        d_gp = (k * (r * h / norms).sum()).to(grad_penalty.dtype).reshape(grad_penalty.shape)
        # d(h / n)/dn = target / n^2 where h > 0 (or two-sided), else 0.
        dh = target / (norms * norms)
        if one_sided:
            dh = torch.where(norms > target, dh, torch.zeros_like(dh))
        d_norms_terms.append(r * k * grad_penalty.to(norms.dtype).reshape(()) * dh)
    if grad_norms is not None:
        d_gn = r / norms
        d_norms_terms.append(-r * grad_norms / (norms * norms))
    if d_norms_terms:
        d_norms = sum(d_norms_terms)
    return d_gp, d_gn, d_grads, d_norms, None, None, None


register_autograd("fastgen::grad_penalty", _grad_penalty_backward, setup_context=_setup_grad_penalty)
register_autograd("fastgen::grad_penalty_backward", _grad_penalty_backward_backward,
                                setup_context=_setup_grad_penalty_backward)


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


@torch.library.register_kernel("fastgen::interpolate", "cuda")
def _interpolate_cuda(real, fake, alpha):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.interpolate(real, fake, alpha)


@torch.library.register_kernel("fastgen::interpolate_backward", "cuda")
def _interpolate_backward_cuda(grad, real, fake, alpha, output_mask):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.interpolate_backward(grad, real, fake, alpha, output_mask)


@torch.library.register_kernel("fastgen::grad_penalty", "cuda")
def _grad_penalty_cuda(grads, target, weight, one_sided, with_grad):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.grad_penalty(grads, target, weight, one_sided, with_grad)


@torch.library.register_kernel("fastgen::grad_penalty_backward", "cuda")
def _grad_penalty_backward_cuda(grad_penalty, grad_norms, grads, norms, target, weight, one_sided):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.grad_penalty_backward(grad_penalty, grad_norms, grads, norms, target, weight, one_sided)
