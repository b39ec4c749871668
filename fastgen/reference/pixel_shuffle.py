"""Eager references for PixelShuffle / PixelUnshuffle / PReLU and the SRGAN upsampling tail
PixelShuffle -> PReLU, as a user writes them with torch.nn."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

pixel_shuffle = F.pixel_shuffle
pixel_unshuffle = F.pixel_unshuffle
prelu = F.prelu

PixelShuffle = nn.PixelShuffle
PixelUnshuffle = nn.PixelUnshuffle
PReLU = nn.PReLU


def pixel_shuffle_prelu(input: torch.Tensor, weight: torch.Tensor, upscale_factor: int) -> torch.Tensor:
    return F.prelu(F.pixel_shuffle(input, upscale_factor), weight)


class PixelShufflePReLU(nn.Module):
    """Eager twin of fastgen.nn.PixelShufflePReLU: nn.PixelShuffle then nn.PReLU's math, with
    the PReLU weight registered as `weight` (the fused layer's state_dict)."""

    def __init__(self, upscale_factor: int, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.upscale_factor = upscale_factor
        self.num_parameters = num_parameters
        self.init = init
        self.weight = nn.Parameter(torch.full((num_parameters,), float(init), device=device, dtype=dtype))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_prelu(input, self.weight, self.upscale_factor)
