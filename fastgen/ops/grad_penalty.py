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

from fastgen._checks import acc_dtype, check_op_like, check_same_device
from fastgen._layout import batch_major, in_layout_of
from fastgen.ops._triton import register_cuda

_ops = torch.ops.fastgen


def _check_batched_floating(op: str, name: str, t) -> None:
    torch._check(
        t.dim() >= 1, lambda: f"fastgen.{op}: {name} must have a batch dimension (at least 1-D), got a 0-d tensor"
    )
    torch._check(
        t.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {t.dtype}"
    )


def _check_per_sample(op: str, name: str, v, x, dtype, x_name: str) -> None:
    torch._check(
        v.dim() == 1 and v.shape[0] == x.shape[0],
        lambda: (
            f"fastgen.{op}: {name} must have shape ({x.shape[0]},) (one value per sample of "
            f"{x_name}), got {tuple(v.shape)}"
        ),
    )
    torch._check(v.dtype == dtype, lambda: f"fastgen.{op}: {name} must have dtype {dtype}, got {v.dtype}")
    torch._check(
        v.device == x.device,
        lambda: f"fastgen.{op}: {name} must be on the device of {x_name} ({x.device}), got {v.device}",
    )


def check_interpolate_args(real, fake, alpha) -> None:
    """The checks csrc/grad_penalty.cpp makes, for the fake impls and the Triton launchers."""
    op = "interpolate"
    _check_batched_floating(op, "real", real)
    check_op_like(op, "fake", fake, "real", real)
    _check_per_sample(op, "alpha", alpha, real, real.dtype, "real")


def check_interpolate_backward_args(grad, real, fake, alpha, output_mask) -> None:
    op = "interpolate_backward"
    _check_batched_floating(op, "grad", grad)
    _check_per_sample(op, "alpha", alpha, grad, grad.dtype, "grad")
    torch._check(
        not output_mask[2] or (real is not None and fake is not None),
        lambda: f"fastgen.{op}: the gradient of alpha needs real and fake",
    )
    if real is not None:
        check_op_like(op, "real", real, "grad", grad)
    if fake is not None:
        check_op_like(op, "fake", fake, "grad", grad)


def check_penalty_args(op: str, grads, target: float, weight: float) -> None:
    _check_batched_floating(op, "grads", grads)
    torch._check(
        math.isfinite(target) and target >= 0,
        lambda: f"fastgen.{op}: target must be a finite number >= 0, got {target}",
    )
    torch._check(math.isfinite(weight), lambda: f"fastgen.{op}: weight must be a finite number, got {weight}")


def check_penalty_backward_args(grad_penalty, grad_norms, grads, norms, target, weight) -> None:
    op = "grad_penalty_backward"
    check_penalty_args(op, grads, target, weight)
    acc = acc_dtype(grads.dtype)
    _check_per_sample(op, "norms", norms, grads, acc, "grads")
    if grad_penalty is not None:
        torch._check(
            grad_penalty.numel() == 1,
            lambda: (
                f"fastgen.{op}: grad_penalty must be a scalar (the gradient of the penalty), got "
                f"shape {tuple(grad_penalty.shape)}"
            ),
        )
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
    return (
        torch.empty_like(layout) if output_mask[0] else grad.new_empty((0,)),
        torch.empty_like(layout) if output_mask[1] else grad.new_empty((0,)),
        alpha.new_empty((grad.shape[0],)) if output_mask[2] else alpha.new_empty((0,)),
    )


@torch.library.register_fake("fastgen::grad_penalty")
def _grad_penalty_fake(grads, target, weight, one_sided, with_grad):
    check_penalty_args("grad_penalty", grads, target, weight)
    d_grads = torch.empty_like(batch_major(grads)) if with_grad else grads.new_empty((0,))
    return grads.new_empty(()), grads.new_empty((grads.shape[0],), dtype=acc_dtype(grads.dtype)), d_grads


@torch.library.register_fake("fastgen::grad_penalty_backward")
def _grad_penalty_backward_fake(grad_penalty, grad_norms, grads, norms, target, weight, one_sided):
    check_penalty_backward_args(grad_penalty, grad_norms, grads, norms, target, weight)
    check_same_device(
        "grad_penalty_backward", "grads", grads, grad_penalty=grad_penalty, grad_norms=grad_norms, norms=norms
    )
    return torch.empty_like(batch_major(grads))


# ---------------------------------------------------------------------------------------
# CUDA: the checks and layouts above, then the Triton launchers (fastgen.triton_kernels.grad_penalty)


def _interpolate_cuda(kernels, real, fake, alpha):
    check_interpolate_args(real, fake, alpha)
    real_ = batch_major(real)
    return kernels.interpolate(real_, in_layout_of(fake, real_), alpha, acc_dtype(real.dtype))


def _interpolate_backward_cuda(kernels, grad, real, fake, alpha, output_mask):
    check_interpolate_backward_args(grad, real, fake, alpha, output_mask)
    grad_ = batch_major(grad)
    # real and fake (in grad's layout) are read only for the gradient of alpha.
    real_, fake_ = (in_layout_of(real, grad_), in_layout_of(fake, grad_)) if output_mask[2] else (grad_, grad_)
    return kernels.interpolate_backward(grad_, real_, fake_, alpha, output_mask, acc_dtype(grad.dtype))


def _grad_penalty_cuda(kernels, grads, target, weight, one_sided, with_grad=False):
    check_penalty_args("grad_penalty", grads, target, weight)
    return kernels.grad_penalty(batch_major(grads), target, weight, one_sided, with_grad, acc_dtype(grads.dtype))


def _grad_penalty_backward_cuda(kernels, grad_penalty, grad_norms, grads, norms, target, weight, one_sided):
    check_penalty_backward_args(grad_penalty, grad_norms, grads, norms, target, weight)
    return kernels.grad_penalty_backward(
        grad_penalty, grad_norms, batch_major(grads), norms, target, weight, one_sided, acc_dtype(grads.dtype)
    )


register_cuda(
    "grad_penalty",
    {
        "interpolate": _interpolate_cuda,
        "interpolate_backward": _interpolate_backward_cuda,
        "grad_penalty": _grad_penalty_cuda,
        "grad_penalty_backward": _grad_penalty_backward_cuda,
    },
)
