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
# CUDA: Triton kernels, imported on first use


from fastgen.ops._triton import cuda_triton  # noqa: E402  (imports no Triton)


@cuda_triton("fastgen::interpolate")
def _interpolate_cuda(real, fake, alpha):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.interpolate(real, fake, alpha)


@cuda_triton("fastgen::interpolate_backward")
def _interpolate_backward_cuda(grad, real, fake, alpha, output_mask):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.interpolate_backward(grad, real, fake, alpha, output_mask)


@cuda_triton("fastgen::grad_penalty")
def _grad_penalty_cuda(grads, target, weight, one_sided, with_grad):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.grad_penalty(grads, target, weight, one_sided, with_grad)


@cuda_triton("fastgen::grad_penalty_backward")
def _grad_penalty_backward_cuda(grad_penalty, grad_norms, grads, norms, target, weight, one_sided):
    from fastgen.triton_kernels import grad_penalty as kernels

    return kernels.grad_penalty_backward(grad_penalty, grad_norms, grads, norms, target, weight, one_sided)
