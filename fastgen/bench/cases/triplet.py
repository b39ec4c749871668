"""Siamese losses: batch-hard triplet (fused pairwise distances + mining), triplet margin and
contrastive losses, against the eager code a user writes."""
from __future__ import annotations

import torch
import torch.nn.functional as TF

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, register
from fastgen.bench.shapes import BATCH_HARD_TRIPLET, SIAMESE_PAIRS
from fastgen.reference import triplet as reference


def _batch_hard(shape, dtype) -> Workload:
    batch, emb = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, emb, generator=gen, dtype=dtype)
    labels = torch.arange(batch) // 4  # P x K batch, K = 4
    return Workload(
        inputs=(x, labels),
        fastgen_fn=lambda e, y: F.batch_hard_triplet_loss(e, y),
        eager_fn=lambda e, y: reference.batch_hard_triplet_loss(e, y),
        grad_inputs=(0,),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype),),
        min_bytes={"fwd": nbytes(x, labels), "fwd+bwd": 3 * nbytes(x) + nbytes(labels)},
    )


def _triplet(shape, dtype) -> Workload:
    gen = torch.Generator().manual_seed(0)
    a, p, n = (torch.randn(shape, generator=gen, dtype=dtype) for _ in range(3))
    return Workload(
        inputs=(a, p, n),
        fastgen_fn=lambda x, y, z: F.triplet_margin_loss(x, y, z),
        eager_fn=lambda x, y, z: TF.triplet_margin_loss(x, y, z),
        grad_inputs=(0, 1, 2),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype),),
        min_bytes={"fwd": 3 * nbytes(a), "fwd+bwd": 9 * nbytes(a)},
    )


def _contrastive(shape, dtype) -> Workload:
    gen = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(shape, generator=gen, dtype=dtype) for _ in range(2))
    y = torch.randint(0, 2, (shape[0],), generator=gen).to(dtype)
    return Workload(
        inputs=(x1, x2, y),
        fastgen_fn=lambda a, b, t: F.contrastive_loss(a, b, t, margin=16.0),
        eager_fn=lambda a, b, t: reference.contrastive_loss(a, b, t, margin=16.0),
        grad_inputs=(0, 1),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype),),
        min_bytes={"fwd": 2 * nbytes(x1), "fwd+bwd": 6 * nbytes(x1)},
    )


register(Case(name="batch_hard_triplet", family="siamese", shapes=BATCH_HARD_TRIPLET, make=_batch_hard,
              description="batch-hard triplet loss (margin 0.3), P x K batch (K=4), shape (B, E)"))
register(Case(name="triplet_margin_loss", family="siamese", shapes=SIAMESE_PAIRS, make=_triplet,
              description="torch's triplet margin loss (p=2, margin 1), shape (B, E)"))
register(Case(name="contrastive_loss", family="siamese", shapes=SIAMESE_PAIRS, make=_contrastive,
              description="contrastive loss on pairs (margin 16), shape (B, E)"))
