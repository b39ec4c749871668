"""Drop-in PixelShuffle, PixelUnshuffle and PReLU, and the fused PixelShufflePReLU (the SRGAN
upsampling tail: conv -> PixelShuffle -> PReLU, the last two in one pass)."""

from __future__ import annotations

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F


class PixelShuffle(nn.PixelShuffle):
    """torch.nn.PixelShuffle on fastgen's kernel (channels_last kept)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(input, self.upscale_factor)


class PixelUnshuffle(nn.PixelUnshuffle):
    """torch.nn.PixelUnshuffle on fastgen's kernel (channels_last kept)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(input, self.downscale_factor)


class PReLU(nn.PReLU):
    """torch.nn.PReLU (same signature, defaults and state_dict) with a one-pass backward."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.prelu(input, self.weight)


class PixelShufflePReLU(nn.Module):
    """torch.nn.PixelShuffle(upscale_factor) followed by torch.nn.PReLU(num_parameters, init),
    fused: one pass forward (bit-exact with the pair) and one pass backward.

    The state_dict holds `weight` of shape (num_parameters,), as nn.PReLU's; num_parameters is
    1 or the number of output channels (input channels / upscale_factor**2).
    """

    def __init__(self, upscale_factor: int, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        for name, value in (("upscale_factor", upscale_factor), ("num_parameters", num_parameters)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                _checks.fail("nn.PixelShufflePReLU", f"{name} must be a positive int, got {value!r}")
        self.upscale_factor = upscale_factor
        self.num_parameters = num_parameters
        self.init = init
        self.weight = nn.Parameter(torch.empty(num_parameters, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.init)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle_prelu(input, self.weight, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}, num_parameters={self.num_parameters}"
