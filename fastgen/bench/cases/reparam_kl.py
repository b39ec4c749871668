"""VAE reparameterization + KL: fastgen's fused op vs the eager code a user writes."""

from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, on_device, register
from fastgen.bench.shapes import REPARAM_KL
from fastgen.reference import reparam_kl as reference


def _make(shape, dtype, device="cpu", *, eps_given: bool) -> Workload:
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(shape, generator=gen, dtype=dtype)
    logvar = 0.5 * torch.randn(shape, generator=gen, dtype=dtype)
    grad_z = torch.randn(shape, generator=gen, dtype=dtype)
    grad_kl = torch.tensor(1.0, dtype=dtype)
    eps = torch.randn(shape, generator=gen, dtype=dtype) if eps_given else None
    mu, logvar, grad_z, grad_kl = on_device(device, mu, logvar, grad_z, grad_kl)
    one = nbytes(mu)
    if eps_given:
        inputs = (mu, logvar, eps.to(device))
        # fwd reads mu, logvar, eps and writes z; bwd reads grad_z, mu, logvar, eps, writes 2 grads.
        min_bytes = {"fwd": 4 * one, "fwd+bwd": 10 * one}
    else:
        inputs = (mu, logvar)
        # The noise never touches memory: fwd reads 2 and writes 1; bwd reads 3 and writes 2.
        min_bytes = {"fwd": 3 * one, "fwd+bwd": 8 * one}
    return Workload(
        inputs=inputs,
        fastgen_fn=lambda *a: F.reparameterize_kl(*a),
        # As a user writes it: torch.randn_like when eps is not given.
        eager_fn=lambda *a: reference.reparameterize_kl(*a),
        grad_inputs=(0, 1),
        grad_outputs=lambda out: out,
        upstream_grads=(grad_z, grad_kl),
        min_bytes=min_bytes,
    )


register(
    Case(
        name="reparam_kl",
        family="reparam_kl",
        shapes=REPARAM_KL,
        make=lambda shape, dtype, device="cpu": _make(shape, dtype, device, eps_given=True),
        description="z = mu + exp(logvar/2) * eps and the KL to N(0, I), eps given",
    )
)
register(
    Case(
        name="reparam_kl[noise]",
        family="reparam_kl",
        shapes=REPARAM_KL,
        make=lambda shape, dtype, device="cpu": _make(shape, dtype, device, eps_given=False),
        description="the same with eps drawn: in-kernel Philox vs eager torch.randn_like",
    )
)
