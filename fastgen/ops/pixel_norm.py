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

from fastgen._checks import acc_dtype, check_op_like, check_same_device
from fastgen._layout import in_layout_of
from fastgen.ops._triton import register_cuda

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
    torch._check(
        x.dim() >= 2,
        lambda: f"fastgen.{op}: {name} must have a batch and a channel dimension (N, C, ...), got {x.dim()}-D",
    )
    torch._check(
        x.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {x.dtype}"
    )
    torch._check(math.isfinite(eps) and eps >= 0, lambda: f"fastgen.{op}: eps must be a finite number >= 0, got {eps}")


def check_backward_args(grad, x, eps) -> None:
    op = "pixel_norm_backward"
    check_args(op, x, eps)
    check_op_like(op, "grad", grad, "x", x)


@torch.library.register_fake("fastgen::pixel_norm")
def _pixel_norm_fake(x, eps):
    check_args("pixel_norm", x, eps)
    return torch.empty_like(pixel_layout(x))


@torch.library.register_fake("fastgen::pixel_norm_backward")
def _pixel_norm_backward_fake(grad, x, eps):
    check_backward_args(grad, x, eps)
    check_same_device("pixel_norm_backward", "x", x, grad=grad)
    return torch.empty_like(pixel_layout(x))


# ---------------------------------------------------------------------------------------
# CUDA: the checks and layout above, then the Triton launchers (fastgen.triton_kernels.pixel_norm)


def _pixel_norm_cuda(kernels, x, eps):
    check_args("pixel_norm", x, eps)
    return kernels.pixel_norm(pixel_layout(x), eps, acc_dtype(x.dtype))


def _pixel_norm_backward_cuda(kernels, grad, x, eps):
    check_backward_args(grad, x, eps)
    x_ = pixel_layout(x)
    return kernels.pixel_norm_backward(in_layout_of(grad, x_), x_, eps, acc_dtype(x.dtype))


register_cuda("pixel_norm", {"pixel_norm": _pixel_norm_cuda, "pixel_norm_backward": _pixel_norm_backward_cuda})
