"""PixelShuffle / PixelUnshuffle and PixelShuffle + PReLU: fake impls and the CUDA
(Triton) kernels for fastgen::pixel_shuffle, fastgen::pixel_unshuffle,
fastgen::pixel_shuffle_prelu and fastgen::pixel_shuffle_prelu_backward.

The kernels live in csrc/pixel_shuffle.cpp. pixel_shuffle and pixel_unshuffle are each other's
gradient. The autograd (double backward included) is in csrc/autograd/pixel_shuffle.cpp.
"""

from __future__ import annotations

import torch
from torch._prims_common import suggest_memory_format

from fastgen._checks import acc_dtype, check_int_product, check_same_device
from fastgen.ops._triton import register_cuda

_ops = torch.ops.fastgen


def memory_format(t: torch.Tensor) -> torch.memory_format:
    """The layout the kernels walk and write: channels_last for a 4-D tensor whose strides
    suggest it (as torch's pixel_shuffle decides), else contiguous."""
    if t.dim() == 4 and suggest_memory_format(t) == torch.channels_last:
        return torch.channels_last
    return torch.contiguous_format


# ---------------------------------------------------------------------------------------
# checks: the ones csrc/pixel_shuffle.cpp makes, for the fake impls and the Triton launchers


def _check_input(op: str, x, factor: int, factor_name: str) -> None:
    torch._check(
        x.dim() >= 3, lambda: f"fastgen.{op}: input must have at least 3 dimensions (*, C, H, W), got {x.dim()}"
    )
    torch._check(
        x.dtype.is_floating_point, lambda: f"fastgen.{op}: input must be a floating-point tensor, got {x.dtype}"
    )
    torch._check_value(factor > 0, lambda: f"fastgen.{op}: {factor_name} must be positive, got {factor}")
    check_int_product(op, f"{factor_name}**2", factor, factor)
    check_int_product(op, f"the output's height (H * {factor_name})", x.shape[-2], factor)
    check_int_product(op, f"the output's width (W * {factor_name})", x.shape[-1], factor)


def check_shuffle(op: str, x, upscale_factor: int) -> int:
    """Checks a pixel_shuffle input; returns C, the output channels."""
    _check_input(op, x, upscale_factor, "upscale_factor")
    rr = upscale_factor * upscale_factor
    torch._check(
        x.shape[-3] % rr == 0,
        lambda: (
            f"fastgen.{op}: input.size(-3) (channels) must be divisible by upscale_factor**2 = {rr}, got {x.shape[-3]}"
        ),
    )
    return x.shape[-3] // rr


def check_unshuffle(op: str, x, downscale_factor: int) -> None:
    _check_input(op, x, downscale_factor, "downscale_factor")
    r = downscale_factor
    torch._check(
        x.shape[-2] % r == 0 and x.shape[-1] % r == 0,
        lambda: (
            f"fastgen.{op}: input's height and width must be divisible by downscale_factor = {r}, "
            f"got {x.shape[-2]} x {x.shape[-1]}"
        ),
    )


def check_weight(op: str, weight, x, channels) -> None:
    torch._check(
        weight.dim() <= 1, lambda: f"fastgen.{op}: weight must be a scalar or 1-D tensor, got {weight.dim()} dimensions"
    )
    torch._check(
        weight.numel() == 1 or weight.numel() == channels,
        lambda: f"fastgen.{op}: weight must have 1 or C = {channels} (output channels) elements, got {weight.numel()}",
    )
    torch._check_value(
        weight.numel() == 1 or x.dim() == 4,
        lambda: f"fastgen.{op}: input must be 4-D (N, C*r*r, H, W) with a per-channel weight, got {x.dim()}-D",
    )
    torch._check(
        weight.dtype == x.dtype,
        lambda: f"fastgen.{op}: weight must have the dtype of input ({x.dtype}), got {weight.dtype}",
    )
    torch._check(
        weight.device == x.device,
        lambda: f"fastgen.{op}: weight must be on the device of input ({x.device}), got {weight.device}",
    )


def check_backward(grad_output, x, weight, upscale_factor: int) -> int:
    op = "pixel_shuffle_prelu_backward"
    channels = check_shuffle(op, x, upscale_factor)
    check_weight(op, weight, x, channels)
    shape = shuffled_shape(x, upscale_factor)
    torch._check(
        tuple(grad_output.shape) == shape,
        lambda: f"fastgen.{op}: grad_output must have the output's shape {shape}, got {tuple(grad_output.shape)}",
    )
    torch._check(
        grad_output.dtype == x.dtype,
        lambda: f"fastgen.{op}: grad_output must have the dtype of input ({x.dtype}), got {grad_output.dtype}",
    )
    torch._check(
        grad_output.device == x.device,
        lambda: f"fastgen.{op}: grad_output must be on the device of input ({x.device}), got {grad_output.device}",
    )
    return channels


def shuffled_shape(x, r: int) -> tuple:
    return (*x.shape[:-3], x.shape[-3] // (r * r), x.shape[-2] * r, x.shape[-1] * r)


def unshuffled_shape(x, r: int) -> tuple:
    return (*x.shape[:-3], x.shape[-3] * r * r, x.shape[-2] // r, x.shape[-1] // r)


def _empty(shape, like: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


# ---------------------------------------------------------------------------------------
# fake impls


@torch.library.register_fake("fastgen::pixel_shuffle")
def _pixel_shuffle_fake(self, upscale_factor):
    check_shuffle("pixel_shuffle", self, upscale_factor)
    return _empty(shuffled_shape(self, upscale_factor), self, memory_format(self))


@torch.library.register_fake("fastgen::pixel_unshuffle")
def _pixel_unshuffle_fake(self, downscale_factor):
    check_unshuffle("pixel_unshuffle", self, downscale_factor)
    return _empty(unshuffled_shape(self, downscale_factor), self, memory_format(self))


@torch.library.register_fake("fastgen::pixel_shuffle_prelu")
def _pixel_shuffle_prelu_fake(self, weight, upscale_factor):
    channels = check_shuffle("pixel_shuffle_prelu", self, upscale_factor)
    check_weight("pixel_shuffle_prelu", weight, self, channels)
    check_same_device("pixel_shuffle_prelu", "input", self, weight=weight)
    return _empty(shuffled_shape(self, upscale_factor), self, memory_format(self))


@torch.library.register_fake("fastgen::pixel_shuffle_prelu_backward")
def _pixel_shuffle_prelu_backward_fake(grad_output, self, weight, upscale_factor, input_grad, weight_grad):
    check_backward(grad_output, self, weight, upscale_factor)
    check_same_device("pixel_shuffle_prelu_backward", "input", self, grad_output=grad_output, weight=weight)
    grad_input = _empty(self.shape, self, memory_format(self)) if input_grad else self.new_empty((0,))
    grad_weight = weight.new_empty(weight.shape) if weight_grad else weight.new_empty((0,))
    return grad_input, grad_weight


# ---------------------------------------------------------------------------------------
# CUDA: the checks and layout above, then the Triton launchers (fastgen.triton_kernels.pixel_shuffle)


def _pixel_shuffle_cuda(kernels, x, upscale_factor):
    channels = check_shuffle("pixel_shuffle", x, upscale_factor)
    return kernels.shuffle(
        x, None, upscale_factor, channels, shuffled_shape(x, upscale_factor), memory_format(x), acc_dtype(x.dtype)
    )


def _pixel_shuffle_prelu_cuda(kernels, x, weight, upscale_factor):
    channels = check_shuffle("pixel_shuffle_prelu", x, upscale_factor)
    check_weight("pixel_shuffle_prelu", weight, x, channels)
    return kernels.shuffle(
        x, weight, upscale_factor, channels, shuffled_shape(x, upscale_factor), memory_format(x), acc_dtype(x.dtype)
    )


def _pixel_unshuffle_cuda(kernels, x, downscale_factor):
    check_unshuffle("pixel_unshuffle", x, downscale_factor)
    return kernels.unshuffle(
        x, downscale_factor, unshuffled_shape(x, downscale_factor), memory_format(x), acc_dtype(x.dtype)
    )


def _pixel_shuffle_prelu_backward_cuda(kernels, grad_output, x, weight, upscale_factor, input_grad, weight_grad):
    channels = check_backward(grad_output, x, weight, upscale_factor)
    return kernels.pixel_shuffle_prelu_backward(
        grad_output, x, weight, upscale_factor, input_grad, weight_grad, channels, memory_format(x), acc_dtype(x.dtype)
    )


register_cuda(
    "pixel_shuffle",
    {
        "pixel_shuffle": _pixel_shuffle_cuda,
        "pixel_unshuffle": _pixel_unshuffle_cuda,
        "pixel_shuffle_prelu": _pixel_shuffle_prelu_cuda,
        "pixel_shuffle_prelu_backward": _pixel_shuffle_prelu_backward_cuda,
    },
)
