"""Progressive GAN pixel norm: fake impls and the CUDA (Triton)
kernels for fastgen::pixel_norm and fastgen::pixel_norm_backward.

The math lives in csrc/pixel_norm.cpp, the autograd (double backward included) in
csrc/autograd/pixel_norm.cpp. With r = (mean_c x^2 + eps)^(-1/2) per pixel:
    y  = r x
    gx = r g - r^3 x mean_c(g x)                      (pixel_norm_backward)
"""
from __future__ import annotations

import math

import torch

from fastgen._checks import check_same_device
from fastgen._autograd import register_autograd

_ops = torch.ops.fastgen


def pixel_layout(x: torch.Tensor) -> torch.Tensor:
    """The layout the kernels walk (csrc/pixel_norm.cpp::pixel_layout): x itself when it is
    contiguous (planar) or has its channels innermost (interleaved, e.g. channels_last), else
    a contiguous copy. Outputs are empty_like of this."""
    if x.is_contiguous() or x.movedim(1, -1).is_contiguous():
        return x
    return x.contiguous()


def check_args(op: str, x, eps: float, name: str = "x") -> None:
    """The checks csrc/pixel_norm.cpp makes, for the fake impls and the Triton launchers."""
    torch._check(x.dim() >= 2, lambda: f"fastgen.{op}: {name} must have a batch and a channel dimension (N, C, ...), got {x.dim()}-D")
    torch._check(x.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {x.dtype}")
    torch._check(math.isfinite(eps) and eps >= 0, lambda: f"fastgen.{op}: eps must be a finite number >= 0, got {eps}")


def check_backward_args(grad, x, eps) -> None:
    op = "pixel_norm_backward"
    check_args(op, x, eps)
    torch._check(grad.shape == x.shape, lambda: f"fastgen.{op}: grad must have the shape of x {tuple(x.shape)}, got {tuple(grad.shape)}")
    torch._check(grad.dtype == x.dtype, lambda: f"fastgen.{op}: grad must have the dtype of x ({x.dtype}), got {grad.dtype}")
    torch._check(grad.device == x.device, lambda: f"fastgen.{op}: grad must be on the device of x ({x.device}), got {grad.device}")


@torch.library.register_fake("fastgen::pixel_norm")
def _pixel_norm_fake(x, eps):
    check_args("pixel_norm", x, eps)
    return torch.empty_like(pixel_layout(x))


@torch.library.register_fake("fastgen::pixel_norm_backward")
def _pixel_norm_backward_fake(grad, x, eps):
    check_same_device("pixel_norm_backward", "x", x, grad=grad)
    check_backward_args(grad, x, eps)
    return torch.empty_like(pixel_layout(x))


# ---------------------------------------------------------------------------------------
# autograd


def _setup_pixel_norm(ctx, inputs, output):
    x, eps = inputs
    ctx.eps = eps
    ctx.save_for_backward(x)


def _pixel_norm_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return _ops.pixel_norm_backward(grad, x, ctx.eps), None


def _setup_backward(ctx, inputs, output):
    grad, x, eps = inputs
    ctx.eps = eps
    ctx.save_for_backward(grad, x)


def _pixel_norm_backward_backward(ctx, a):
    """VJP of gx = r g - r^3 x (x.g)/C (per pixel, dots over the channels), given a = d/d(gx):
        d/dg = r a - r^3 x (x.a)/C                     (the same map: it is symmetric)
        d/dx = -(a.g) r^3 x/C + 3 r^5 (x.a)(x.g) x/C^2 - r^3 ((x.g) a + (x.a) g)/C
    """
    grad, x, = ctx.saved_tensors
    if a is None:
        return None, None, None
    d_grad = _ops.pixel_norm_backward(a, x, ctx.eps)
    c = x.shape[1]
    r = torch.rsqrt(x.pow(2).mean(1, keepdim=True) + ctx.eps)
    r3 = r * r * r
    xa = (x * a).sum(1, keepdim=True)
    xg = (x * grad).sum(1, keepdim=True)
    ag = (a * grad).sum(1, keepdim=True)
    d_x = (3 * r3 * r * r * xa * xg / (c * c) - r3 * ag / c) * x - (r3 / c) * (xg * a + xa * grad)
    return d_grad, d_x, None


register_autograd("fastgen::pixel_norm", _pixel_norm_backward, setup_context=_setup_pixel_norm)
register_autograd("fastgen::pixel_norm_backward", _pixel_norm_backward_backward,
                                setup_context=_setup_backward)


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


@torch.library.register_kernel("fastgen::pixel_norm", "cuda")
def _pixel_norm_cuda(x, eps):
    from fastgen.triton_kernels import pixel_norm as kernels

    return kernels.pixel_norm(x, eps)


@torch.library.register_kernel("fastgen::pixel_norm_backward", "cuda")
def _pixel_norm_backward_cuda(grad, x, eps):
    from fastgen.triton_kernels import pixel_norm as kernels

    return kernels.pixel_norm_backward(grad, x, eps)
