"""Instance norm (+activation, +residual) and the CycleGAN / pix2pix generator training steps:
fastgen's fused op and models vs the eager code a user writes (and torch.compile of it)."""
from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen import models
from fastgen.bench.registry import Case, Workload, autocast_variant, nbytes, on_device, register
from fastgen.bench.shapes import (CYCLEGAN_GENERATOR, INSTANCE_NORM, INSTANCE_NORM_DISCRIMINATOR,
                                  INSTANCE_NORM_RESIDUAL, PIX2PIX_GENERATOR)
from fastgen.reference import instance_norm as reference
from fastgen.reference import models as eager_models


def _norm(shape, dtype, device="cpu", *, activation, slope=0.01, channels_last=False, residual=False) -> Workload:
    gen = torch.Generator().manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, generator=gen, dtype=dtype).to(device).contiguous(memory_format=fmt)
    grad = torch.randn(shape, generator=gen, dtype=dtype).to(device).contiguous(memory_format=fmt)
    kwargs = dict(activation=activation, negative_slope=slope)
    one = nbytes(x)
    if residual:
        res = torch.randn(shape, generator=gen, dtype=dtype).to(device).contiguous(memory_format=fmt)
        inputs = (x, res)
        fast = lambda x, r: F.instance_norm(x, residual=r, **kwargs)  # noqa: E731
        ref = lambda x, r: reference.instance_norm(x, residual=r, **kwargs)  # noqa: E731
        # fwd reads x, residual, writes out; bwd reads x, grad, writes grad_x (grad_res is grad).
        min_bytes = {"fwd": 3 * one, "fwd+bwd": 6 * one}
        grad_inputs = (0, 1)
    else:
        inputs = (x,)
        fast = lambda x: F.instance_norm(x, **kwargs)  # noqa: E731
        ref = lambda x: reference.instance_norm(x, **kwargs)  # noqa: E731
        # fwd reads x and writes out; bwd reads x and grad and writes grad_x.
        min_bytes = {"fwd": 2 * one, "fwd+bwd": 5 * one}
        grad_inputs = (0,)
    return Workload(inputs=inputs, fastgen_fn=fast, eager_fn=ref, grad_inputs=grad_inputs,
                    grad_outputs=lambda out: (out,), upstream_grads=(grad,), min_bytes=min_bytes)


register(Case(
    name="instance_norm_relu",
    family="instance_norm",
    shapes=INSTANCE_NORM,
    make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation="relu"),
    description="InstanceNorm2d + ReLU (CycleGAN generator), NCHW",
))
register(Case(
    name="instance_norm_relu[channels_last]",
    family="instance_norm",
    shapes=INSTANCE_NORM,
    make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation="relu", channels_last=True),
    description="InstanceNorm2d + ReLU on channels_last input (eager returns NCHW)",
))
register(Case(
    name="instance_norm_leaky_relu[discriminator]",
    family="instance_norm",
    shapes=INSTANCE_NORM_DISCRIMINATOR,
    make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation="leaky_relu", slope=0.2),
    description="InstanceNorm2d + LeakyReLU(0.2) at the PatchGAN discriminator's shapes",
))
register(Case(
    name="instance_norm[residual]",
    family="instance_norm",
    shapes=INSTANCE_NORM_RESIDUAL,
    make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation=None, residual=True),
    description="x + InstanceNorm2d(h): the end of a CycleGAN residual block",
))


def _generator_step(shape, dtype, device, fast_cls, twin_cls, **kwargs) -> Workload:
    torch.manual_seed(0)
    fast = fast_cls(**kwargs).to(device, dtype)
    twin = twin_cls(**kwargs).to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    target = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    x, target = on_device(device, x, target)

    def step_of(model):
        # The generator's reconstruction term (L1 to a target); backward gives every parameter's gradient.
        return lambda x, target: (model(x) - target).abs().mean()

    params = sum(nbytes(p) for p in fast.parameters())
    return Workload(
        inputs=(x, target), fastgen_fn=step_of(fast), eager_fn=step_of(twin), grad_inputs=(),
        grad_outputs=lambda out: (out,), upstream_grads=(torch.ones((), dtype=dtype, device=device),),
        # A loose floor: parameters read (and their gradients written), images in and out.
        min_bytes={"fwd": params + 3 * nbytes(x), "fwd+bwd": 3 * params + 4 * nbytes(x)},
        params={"fastgen": list(fast.parameters()), "eager": list(twin.parameters()),
                "compile": list(twin.parameters())},
    )


autocast_variant(register(Case(
    name="cyclegan_generator[train]",
    family="cyclegan",
    shapes=CYCLEGAN_GENERATOR,
    make=lambda shape, dtype, device="cpu": _generator_step(shape, dtype, device, models.ResnetGenerator,
                                                            eager_models.ResnetGenerator),
    description="CycleGAN ResnetGenerator (ngf=64, 9 blocks) forward + backward vs its eager twin",
    passes=("fwd+bwd",),
    memory_bound=False,
)))
autocast_variant(register(Case(
    name="pix2pix_generator[train]",
    family="pix2pix",
    shapes=PIX2PIX_GENERATOR,
    # unet_256 for 256x256 images, unet_128 for 128x128: down to 1x1 at the bottleneck.
    make=lambda shape, dtype, device="cpu": _generator_step(shape, dtype, device, models.UnetGenerator,
                                                            eager_models.UnetGenerator,
                                                            num_downs=min(shape[2:]).bit_length() - 1),
    description="pix2pix UnetGenerator (unet_256 / unet_128, instance norm) forward + backward vs its eager twin",
    passes=("fwd+bwd",),
    memory_bound=False,
)))
