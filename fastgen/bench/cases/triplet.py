"""Siamese losses: batch-hard triplet (fused pairwise distances + mining) against the eager code a
user writes (Gram-matrix distances, masked max / min)."""

from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, on_device, register
from fastgen.bench.shapes import BATCH_HARD_TRIPLET
from fastgen.reference import triplet as reference


def _batch_hard(shape, dtype, device="cpu") -> Workload:
    batch, emb = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, emb, generator=gen, dtype=dtype)
    labels = torch.arange(batch) // 4  # P x K batch, K = 4
    x, labels = on_device(device, x, labels)
    return Workload(
        inputs=(x, labels),
        fastgen_fn=lambda e, y: F.batch_hard_triplet_loss(e, y),
        eager_fn=lambda e, y: reference.batch_hard_triplet_loss(e, y),
        grad_inputs=(0,),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        min_bytes={"fwd": nbytes(x, labels), "fwd+bwd": 3 * nbytes(x) + nbytes(labels)},
    )


register(
    Case(
        name="batch_hard_triplet",
        family="triplet",
        shapes=BATCH_HARD_TRIPLET,
        make=_batch_hard,
        description="batch-hard triplet loss (margin 0.3), P x K batch (K=4), shape (B, E)",
        memory_bound=False,
    )
)  # the B x B distances are a Gram matrix (a GEMM)
