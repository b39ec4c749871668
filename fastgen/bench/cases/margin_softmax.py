"""Margin softmax cross-entropy (ArcFace): fastgen's chunked op vs the eager code a user writes,
with the three bare matmuls of the computation timed in the same run as the reference point."""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, on_device, register
from fastgen.bench.shapes import MARGIN_CE
from fastgen.reference import margin_softmax as reference


def _make(shape, dtype, device="cpu") -> Workload:
    batch, classes, emb = shape
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, emb, generator=gen, dtype=dtype)
    w = torch.randn(classes, emb, generator=gen, dtype=dtype)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    x, w, labels = on_device(device, x, w, labels)
    xn, wn = TF.normalize(x), TF.normalize(w)

    # The matmuls the computation is built around, on pre-normalized operands, as plain torch
    # would run them: cos = x_n W_n^T, then (with the gradient in place of cos) grad x_n = G W_n
    # and grad W_n = G^T x_n.
    def bare_forward():
        return xn @ wn.T

    def bare_forward_backward():
        cos = xn @ wn.T
        return cos @ wn, cos.T @ xn

    one = nbytes(x) + nbytes(w)
    return Workload(
        inputs=(x, w, labels),
        fastgen_fn=lambda e, wt, y: F.margin_cross_entropy(e, wt, y),
        eager_fn=lambda e, wt, y: reference.margin_cross_entropy(e, wt, y),
        grad_inputs=(0, 1),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        # fwd reads embeddings and weight; backward reads them again and writes both gradients.
        min_bytes={"fwd": one, "fwd+bwd": 3 * one},
        baselines={"bare matmuls": {"fwd": bare_forward, "fwd+bwd": bare_forward_backward}},
    )


register(
    Case(
        name="margin_ce",
        family="margin_softmax",
        shapes=MARGIN_CE,
        make=_make,
        description="ArcFace margin cross-entropy (s=64, m=0.5), shape (B, C, E); baseline: the bare matmuls",
        memory_bound=False,  # built around three GEMMs
    )
)
