"""RealNVP training step: the fastgen model vs its eager twin (and torch.compile of the twin)."""
from __future__ import annotations

import torch

from fastgen import models
from fastgen.bench.registry import Case, Workload, autocast_variant, nbytes, on_device, register
from fastgen.bench.shapes import REALNVP_STEP
from fastgen.reference import models as eager


def _make(shape, dtype, device="cpu") -> Workload:
    batch, channels, size, _ = shape
    torch.manual_seed(0)
    if (channels, size) == (3, 32):
        kwargs = {}  # the paper's CIFAR-10 model: 64 channels, 8 residual blocks, 2 scales
        fast, twin = models.RealNVP(**kwargs), eager.RealNVP(**kwargs)
    else:
        fast, twin = models.RealNVP.small(channels, size), eager.RealNVP.small(channels, size)
    fast, twin = fast.to(dtype), twin.to(dtype)
    with torch.no_grad():  # the scales start at zero; give them values so every path is exercised
        for name, p in fast.named_parameters():
            if name.endswith("scale"):
                p.copy_(0.5 * torch.randn(p.shape, dtype=dtype))
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, shape, generator=gen).to(dtype) / 255
    noise = torch.rand(shape, generator=gen, dtype=dtype)
    fast, twin = fast.to(device), twin.to(device)
    x, noise = on_device(device, x, noise)
    param_bytes = sum(nbytes(p) for p in fast.parameters())
    return Workload(
        inputs=(x,),
        fastgen_fn=lambda x: fast.loss(x, noise),
        eager_fn=lambda x: twin.loss(x, noise),
        grad_inputs=(),
        grad_outputs=lambda loss: (loss,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        # Not a memory-bound op: the bytes are the data and the parameters (read, and written as
        # gradients), for reference only.
        min_bytes={"fwd": 2 * nbytes(x) + param_bytes, "fwd+bwd": 2 * nbytes(x) + 2 * param_bytes},
        params={"fastgen": list(fast.parameters()), "eager": list(twin.parameters()),
                "compile": list(twin.parameters())},
    )


autocast_variant(register(Case(
    name="realnvp_step",
    family="realnvp",
    shapes=REALNVP_STEP,
    make=_make,
    description="RealNVP loss (mean bits/dim) fwd and training step vs the eager twin; "
                "1x28x28: RealNVP.small(), 3x32x32: the CIFAR-10 model",
    memory_bound=False,
)))
