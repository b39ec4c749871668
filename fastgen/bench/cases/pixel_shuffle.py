"""PixelShuffle + PReLU (the SRGAN upsampler tail): fastgen vs the eager code a user writes
(nn.PixelShuffle then nn.PReLU)."""

from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, on_device, register
from fastgen.bench.shapes import PIXEL_SHUFFLE_PRELU, PIXEL_SHUFFLE_PRELU_CHANNELS_LAST
from fastgen.reference import pixel_shuffle as reference


def _make_shuffle_prelu(shape, dtype, device="cpu", *, channels_last: bool) -> Workload:
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    x = torch.randn(shape, generator=gen, dtype=dtype)
    weight = torch.full((1,), 0.25, dtype=dtype)  # nn.PReLU() as SRResNet uses it
    grad = torch.randn((n, c // 4, 2 * h, 2 * w), generator=gen, dtype=dtype)
    x, weight, grad = on_device(device, x, weight, grad)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
        grad = grad.to(memory_format=torch.channels_last)
    one = nbytes(x)
    return Workload(
        inputs=(x, weight),
        fastgen_fn=lambda x, weight: F.pixel_shuffle_prelu(x, weight, 2),
        eager_fn=lambda x, weight: reference.pixel_shuffle_prelu(x, weight, 2),
        grad_inputs=(0, 1),
        grad_outputs=lambda out: (out,),
        upstream_grads=(grad,),
        # fwd reads x and writes y; bwd reads grad and x and writes grad_x (weight: negligible).
        min_bytes={"fwd": 2 * one, "fwd+bwd": 5 * one},
    )


register(
    Case(
        name="pixel_shuffle_prelu",
        family="pixel_shuffle",
        shapes=PIXEL_SHUFFLE_PRELU,
        make=lambda shape, dtype, device="cpu": _make_shuffle_prelu(shape, dtype, device, channels_last=False),
        description="PReLU(PixelShuffle(x, 2)) with one shared weight (SRGAN upsampler), NCHW; shape = the input",
    )
)
register(
    Case(
        name="pixel_shuffle_prelu[channels_last]",
        family="pixel_shuffle",
        shapes=PIXEL_SHUFFLE_PRELU_CHANNELS_LAST,
        make=lambda shape, dtype, device="cpu": _make_shuffle_prelu(shape, dtype, device, channels_last=True),
        description="the same in channels_last",
    )
)
