"""Progressive GAN's minibatch standard deviation and equalized-learning-rate convolution and
linear layers. Its pixel norm is fastgen.nn.PixelNorm (fastgen/nn/pixel_norm.py)."""

# Plain torch ops, no fused kernel: their cost is the convolution or matmul itself.
from __future__ import annotations

import math

import torch
import torch.nn.functional as TF
from torch import nn

from fastgen import _checks


class MinibatchStdDev(nn.Module):
    """Progressive GAN minibatch standard deviation: for each group of `group_size` samples, the
    standard deviation of every feature over the group, averaged into one number, appended to
    each sample of the group as an extra constant channel: (N, C, H, W) -> (N, C + 1, H, W).
    The group is min(group_size, N) samples, and N must be a multiple of it."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            _checks.fail("nn.MinibatchStdDev", f"group_size must be an int >= 1, got {group_size!r}")
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(self.group_size, n)
        if n % group:
            _checks.fail("nn.MinibatchStdDev", f"the batch ({n}) must be a multiple of group_size ({group})")
        y = x.reshape(group, -1, c, h, w)  # sample g * M + m is member g of group m
        y = (y.var(0, correction=0) + self.eps).sqrt()  # (M, C, H, W)
        y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(group, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], 1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class _Equalized:
    """Equalized learning rate (Karras et al., 2018): weights drawn from N(0, 1) and scaled at run
    time by gain / sqrt(fan_in), so that Adam's per-parameter step sizes treat every layer alike."""

    def _init_equalized(self, fan_in: int, gain: float, bias: bool, out_features: int) -> None:
        self.gain = gain
        self.scale = gain / math.sqrt(fan_in) if fan_in else 0.0
        nn.init.normal_(self.weight)
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features))
        else:
            self.register_parameter("bias", None)


class EqualizedLinear(nn.Module, _Equalized):
    """nn.Linear with an equalized learning rate: y = x (scale W)^T + b, scale = gain / sqrt(in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = math.sqrt(2)):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self._init_equalized(in_features, gain, bias, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TF.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, gain={self.gain:.4g}"
        )


class EqualizedConv2d(nn.Module, _Equalized):
    """nn.Conv2d with an equalized learning rate: the weight is scaled by gain / sqrt(in * k * k)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        gain: float = math.sqrt(2),
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self._init_equalized(in_channels * kernel_size * kernel_size, gain, bias, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return TF.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, bias={self.bias is not None}, gain={self.gain:.4g}"
        )
