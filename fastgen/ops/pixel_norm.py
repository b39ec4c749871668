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
    check_backward_args(grad, x, eps)
    check_same_device("pixel_norm_backward", "x", x, grad=grad)
    return torch.empty_like(pixel_layout(x))


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


from fastgen.ops._triton import cuda_triton  # noqa: E402  (imports no Triton)


@cuda_triton("fastgen::pixel_norm")
def _pixel_norm_cuda(x, eps):
    from fastgen.triton_kernels import pixel_norm as kernels

    return kernels.pixel_norm(x, eps)


@cuda_triton("fastgen::pixel_norm_backward")
def _pixel_norm_backward_cuda(grad, x, eps):
    from fastgen.triton_kernels import pixel_norm as kernels

    return kernels.pixel_norm_backward(grad, x, eps)
