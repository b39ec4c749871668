"""Instance norm (+activation, +residual): fastgen's fused op vs the eager code a user writes
(and torch.compile of it)."""

from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, register
from fastgen.bench.shapes import INSTANCE_NORM, INSTANCE_NORM_DISCRIMINATOR, INSTANCE_NORM_RESIDUAL
from fastgen.reference import instance_norm as reference


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
    return Workload(
        inputs=inputs,
        fastgen_fn=fast,
        eager_fn=ref,
        grad_inputs=grad_inputs,
        grad_outputs=lambda out: (out,),
        upstream_grads=(grad,),
        min_bytes=min_bytes,
    )


register(
    Case(
        name="instance_norm_relu",
        family="instance_norm",
        shapes=INSTANCE_NORM,
        make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation="relu"),
        description="InstanceNorm2d + ReLU (CycleGAN generator), NCHW",
    )
)
register(
    Case(
        name="instance_norm_relu[channels_last]",
        family="instance_norm",
        shapes=INSTANCE_NORM,
        make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation="relu", channels_last=True),
        description="InstanceNorm2d + ReLU on channels_last input (eager returns NCHW)",
    )
)
register(
    Case(
        name="instance_norm_leaky_relu[discriminator]",
        family="instance_norm",
        shapes=INSTANCE_NORM_DISCRIMINATOR,
        make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation="leaky_relu", slope=0.2),
        description="InstanceNorm2d + LeakyReLU(0.2) at the PatchGAN discriminator's shapes",
    )
)
register(
    Case(
        name="instance_norm[residual]",
        family="instance_norm",
        shapes=INSTANCE_NORM_RESIDUAL,
        make=lambda shape, dtype, device="cpu": _norm(shape, dtype, device, activation=None, residual=True),
        description="x + InstanceNorm2d(h): the end of a CycleGAN residual block",
    )
)
