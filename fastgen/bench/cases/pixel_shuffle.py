"""PixelShuffle + PReLU (the SRGAN upsampler tail) and the SRResNet training step: fastgen vs the
eager code a user writes (nn.PixelShuffle then nn.PReLU; the eager twin model)."""
from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen import models
from fastgen.bench.registry import Case, Workload, autocast_variant, nbytes, on_device, register
from fastgen.bench.shapes import PIXEL_SHUFFLE_PRELU, PIXEL_SHUFFLE_PRELU_CHANNELS_LAST, SRRESNET_TRAIN
from fastgen.reference import models as eager_models
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


register(Case(
    name="pixel_shuffle_prelu",
    family="pixel_shuffle",
    shapes=PIXEL_SHUFFLE_PRELU,
    make=lambda shape, dtype, device="cpu": _make_shuffle_prelu(shape, dtype, device, channels_last=False),
    description="PReLU(PixelShuffle(x, 2)) with one shared weight (SRGAN upsampler), NCHW; shape = the input",
))
register(Case(
    name="pixel_shuffle_prelu[channels_last]",
    family="pixel_shuffle",
    shapes=PIXEL_SHUFFLE_PRELU_CHANNELS_LAST,
    make=lambda shape, dtype, device="cpu": _make_shuffle_prelu(shape, dtype, device, channels_last=True),
    description="the same in channels_last",
))


def _make_srresnet_step(shape, dtype, device="cpu") -> Workload:
    torch.manual_seed(0)
    fast = models.SRResNet().to(device, dtype)
    twin = eager_models.SRResNet().to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    lr = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    hr = torch.rand((n, c, 4 * h, 4 * w), generator=gen, dtype=dtype) * 2 - 1
    lr, hr = on_device(device, lr, hr)
    params = list(fast.parameters())
    # Nominal floor: read the inputs and every parameter, write every gradient.
    floor = nbytes(lr, hr) + 2 * nbytes(*params)
    return Workload(
        inputs=(lr, hr),
        fastgen_fn=lambda lr, hr: fast.loss(lr, hr),
        eager_fn=lambda lr, hr: twin.loss(lr, hr),
        grad_inputs=(),
        grad_outputs=lambda loss: (loss,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        min_bytes={"fwd": floor, "fwd+bwd": floor},
        params={"fastgen": params, "eager": list(twin.parameters()), "compile": list(twin.parameters())},
    )


autocast_variant(register(Case(
    name="srresnet_train",
    family="srgan",
    shapes=SRRESNET_TRAIN,
    make=_make_srresnet_step,
    description="SRResNet (64 ch, 16 blocks, x4) training step, MSE loss, vs its eager twin; shape = the LR batch",
    passes=("fwd+bwd",),
    memory_bound=False,
)))
