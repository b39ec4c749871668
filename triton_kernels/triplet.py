"""Triton kernels for the Siamese losses (the CUDA side of csrc/triplet.cpp): per-row kernels for
the triplet margin and contrastive losses (forward writes per-row losses, backward the three /
two gradients), and a tiled batch-hard kernel that mines the hardest positive and negative of
a block of anchors while it computes their distances to every row."""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype

ROWS, BLOCK = 16, 64  # per-row kernels: rows per program, elements per step
BLOCK_I, BLOCK_J, BLOCK_K = 16, 16, 32  # batch-hard tiles: anchors, candidates, elements
# The backward kernels hold several (ROWS, BLOCK) tiles at once: with 4 warps they need 255
# registers and spill (fastgen.triton_kernels.aot --report); 8 warps halve the tiles per thread.
BWD_LAUNCH = {"num_warps": 8}
L2, L1, LINF, GENERAL = 0, 1, 2, 3


def _norm_kind(p: float) -> int:
    return L2 if p == 2 else L1 if p == 1 else LINF if math.isinf(p) else GENERAL


@triton.jit
def _sgn(v):
    return tl.where(v > 0, 1.0, tl.where(v < 0, -1.0, 0.0))


@triton.jit
def _distance(
    x_ptr, y_ptr, rows, B, D, eps, p, NORM: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr, COMPUTE: tl.constexpr
):
    """||x - y + eps||_p of ROWS rows."""
    acc = tl.zeros([ROWS, BLOCK], COMPUTE)
    for k0 in range(0, D, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mask = (rows[:, None] < B) & (k[None, :] < D)
        v = (
            tl.load(x_ptr + rows[:, None] * D + k[None, :], mask=mask, other=0.0).to(COMPUTE)
            - tl.load(y_ptr + rows[:, None] * D + k[None, :], mask=mask, other=0.0).to(COMPUTE)
            + eps
        )
        v = tl.where(mask, tl.abs(v), 0.0)
        if NORM == 0:
            acc += v * v
        elif NORM == 1:
            acc += v
        elif NORM == 2:
            acc = tl.maximum(acc, v)
        else:
            acc += tl.where(v > 0, tl.exp(p * tl.log(tl.where(v > 0, v, 1.0))), 0.0)
    if NORM == 0:
        d = tl.sqrt(tl.sum(acc, axis=1))
    elif NORM == 1:
        d = tl.sum(acc, axis=1)
    elif NORM == 2:
        d = tl.max(acc, axis=1)
    else:
        total = tl.sum(acc, axis=1)
        d = tl.where(total > 0, tl.exp(tl.log(tl.where(total > 0, total, 1.0)) / p), 0.0)
    return d


@triton.jit
def _distance_grad(x_ptr, y_ptr, rows, k, B, D, eps, p, d, g, NORM: tl.constexpr, COMPUTE: tl.constexpr):
    """g * d||x - y + eps||_p / dx on the (ROWS, BLOCK) elements k of rows (0 where d == 0);
    for the inf-norm, divided among the maxima by the caller."""
    mask = (rows[:, None] < B) & (k[None, :] < D)
    v = (
        tl.load(x_ptr + rows[:, None] * D + k[None, :], mask=mask, other=0.0).to(COMPUTE)
        - tl.load(y_ptr + rows[:, None] * D + k[None, :], mask=mask, other=0.0).to(COMPUTE)
        + eps
    )
    safe_d = tl.where(d > 0, d, 1.0)[:, None]
    if NORM == 0:
        out = v / safe_d
    elif NORM == 1:
        out = _sgn(v)
    elif NORM == 2:
        out = tl.where(tl.abs(v) == d[:, None], _sgn(v), 0.0)
    else:
        a = tl.abs(v)
        out = tl.where(a > 0, _sgn(v) * tl.exp((p - 1) * (tl.log(tl.where(a > 0, a, 1.0)) - tl.log(safe_d))), 0.0)
    return tl.where(mask & (d[:, None] > 0), out * g[:, None], 0.0)


@triton.jit
def _ties(x_ptr, y_ptr, rows, B, D, eps, d, BLOCK: tl.constexpr, ROWS: tl.constexpr, COMPUTE: tl.constexpr):
    """How many elements reach the inf-norm d in each row (its gradient is shared among them)."""
    count = tl.zeros([ROWS], COMPUTE)
    for k0 in range(0, D, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mask = (rows[:, None] < B) & (k[None, :] < D)
        v = (
            tl.load(x_ptr + rows[:, None] * D + k[None, :], mask=mask, other=0.0).to(COMPUTE)
            - tl.load(y_ptr + rows[:, None] * D + k[None, :], mask=mask, other=0.0).to(COMPUTE)
            + eps
        )
        count += tl.sum(tl.where(mask & (tl.abs(v) == d[:, None]), 1.0, 0.0), axis=1)
    return tl.maximum(count, 1.0)


@triton.jit
def _triplet_fwd_kernel(
    a_ptr,
    p_ptr,
    n_ptr,
    loss_ptr,
    B,
    D,
    margin,
    eps,
    p,
    SWAP: tl.constexpr,
    NORM: tl.constexpr,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    d_ap = _distance(a_ptr, p_ptr, rows, B, D, eps, p, NORM, BLOCK, ROWS, COMPUTE)
    d_neg = _distance(a_ptr, n_ptr, rows, B, D, eps, p, NORM, BLOCK, ROWS, COMPUTE)
    if SWAP:
        d_neg = tl.minimum(
            d_neg,
            _distance(p_ptr, n_ptr, rows, B, D, eps, p, NORM, BLOCK, ROWS, COMPUTE),
            propagate_nan=tl.PropagateNan.ALL,
        )
    tl.store(loss_ptr + rows, tl.maximum(margin + d_ap - d_neg, 0.0, propagate_nan=tl.PropagateNan.ALL), mask=rows < B)


@triton.jit
def _triplet_bwd_kernel(
    g_ptr,
    a_ptr,
    p_ptr,
    n_ptr,
    ga_ptr,
    gp_ptr,
    gn_ptr,
    B,
    D,
    margin,
    eps,
    p,
    SWAP: tl.constexpr,
    NORM: tl.constexpr,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    g = tl.load(g_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    d_ap = _distance(a_ptr, p_ptr, rows, B, D, eps, p, NORM, BLOCK, ROWS, COMPUTE)
    d_an = _distance(a_ptr, n_ptr, rows, B, D, eps, p, NORM, BLOCK, ROWS, COMPUTE)
    if SWAP:
        d_pn = _distance(p_ptr, n_ptr, rows, B, D, eps, p, NORM, BLOCK, ROWS, COMPUTE)
        w_an = tl.where(d_an < d_pn, 1.0, tl.where(d_an == d_pn, 0.5, 0.0))  # torch.minimum splits ties
        d_neg = tl.minimum(d_an, d_pn)
    else:
        d_pn = d_an
        w_an = tl.full([ROWS], 1.0, COMPUTE)
        d_neg = d_an
    g = tl.where(margin + d_ap - d_neg >= 0, g, 0.0)  # clamp_min's gradient
    g_ap, g_an, g_pn = g, g * w_an, g * (1.0 - w_an)
    if NORM == 2:
        g_ap = g_ap / _ties(a_ptr, p_ptr, rows, B, D, eps, d_ap, BLOCK, ROWS, COMPUTE)
        g_an = g_an / _ties(a_ptr, n_ptr, rows, B, D, eps, d_an, BLOCK, ROWS, COMPUTE)
        if SWAP:
            g_pn = g_pn / _ties(p_ptr, n_ptr, rows, B, D, eps, d_pn, BLOCK, ROWS, COMPUTE)
    for k0 in range(0, D, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mask = (rows[:, None] < B) & (k[None, :] < D)
        u_ap = _distance_grad(a_ptr, p_ptr, rows, k, B, D, eps, p, d_ap, g_ap, NORM, COMPUTE)
        u_an = _distance_grad(a_ptr, n_ptr, rows, k, B, D, eps, p, d_an, g_an, NORM, COMPUTE)
        grad_a = u_ap - u_an
        grad_p = -u_ap
        grad_n = u_an
        if SWAP:
            u_pn = _distance_grad(p_ptr, n_ptr, rows, k, B, D, eps, p, d_pn, g_pn, NORM, COMPUTE)
            grad_p -= u_pn
            grad_n += u_pn
        offs = rows[:, None] * D + k[None, :]
        tl.store(ga_ptr + offs, grad_a.to(ga_ptr.dtype.element_ty), mask=mask)
        tl.store(gp_ptr + offs, grad_p.to(gp_ptr.dtype.element_ty), mask=mask)
        tl.store(gn_ptr + offs, grad_n.to(gn_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _contrastive_fwd_kernel(
    x1_ptr, x2_ptr, y_ptr, loss_ptr, B, D, margin, eps, BLOCK: tl.constexpr, ROWS: tl.constexpr, COMPUTE: tl.constexpr
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    d = _distance(x1_ptr, x2_ptr, rows, B, D, eps, 2.0, 0, BLOCK, ROWS, COMPUTE)
    y = tl.load(y_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    hinge = tl.maximum(margin - d, 0.0, propagate_nan=tl.PropagateNan.ALL)
    tl.store(loss_ptr + rows, y * d * d + (1.0 - y) * hinge * hinge, mask=rows < B)


@triton.jit
def _contrastive_bwd_kernel(
    g_ptr,
    x1_ptr,
    x2_ptr,
    y_ptr,
    g1_ptr,
    g2_ptr,
    gy_ptr,
    B,
    D,
    margin,
    eps,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    g = tl.load(g_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    y = tl.load(y_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    d = _distance(x1_ptr, x2_ptr, rows, B, D, eps, 2.0, 0, BLOCK, ROWS, COMPUTE)
    hinge = tl.maximum(margin - d, 0.0, propagate_nan=tl.PropagateNan.ALL)
    coef = g * (2.0 * y * d - 2.0 * (1.0 - y) * hinge)
    tl.store(gy_ptr + rows, g * (d * d - hinge * hinge), mask=rows < B)
    for k0 in range(0, D, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mask = (rows[:, None] < B) & (k[None, :] < D)
        u = _distance_grad(x1_ptr, x2_ptr, rows, k, B, D, eps, 2.0, d, coef, 0, COMPUTE)
        offs = rows[:, None] * D + k[None, :]
        tl.store(g1_ptr + offs, u.to(g1_ptr.dtype.element_ty), mask=mask)
        tl.store(g2_ptr + offs, (-u).to(g2_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _batch_hard_fwd_kernel(
    e_ptr,
    y_ptr,
    pos_ptr,
    neg_ptr,
    d2p_ptr,
    d2n_ptr,
    B,
    E,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_K: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Hardest positive (largest squared distance, same label, not itself; first on ties) and
    hardest negative (smallest, other label) of BLOCK_I anchors."""
    rows = tl.program_id(0) * BLOCK_I + tl.arange(0, BLOCK_I).to(tl.int64)
    y_i = tl.load(y_ptr + rows, mask=rows < B, other=-1)
    best_pos = tl.full([BLOCK_I], -1.0, COMPUTE)
    best_neg = tl.full([BLOCK_I], float("inf"), COMPUTE)
    pos = tl.full([BLOCK_I], -1, tl.int64)
    neg = tl.full([BLOCK_I], -1, tl.int64)
    for j0 in range(0, B, BLOCK_J):
        cols = j0 + tl.arange(0, BLOCK_J).to(tl.int64)
        y_j = tl.load(y_ptr + cols, mask=cols < B, other=-1)
        d2 = tl.zeros([BLOCK_I, BLOCK_J], COMPUTE)
        for k0 in range(0, E, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(
                e_ptr + rows[:, None] * E + k[None, :], mask=(rows[:, None] < B) & (k[None, :] < E), other=0.0
            ).to(COMPUTE)
            b = tl.load(
                e_ptr + cols[:, None] * E + k[None, :], mask=(cols[:, None] < B) & (k[None, :] < E), other=0.0
            ).to(COMPUTE)
            v = a[:, None, :] - b[None, :, :]
            d2 += tl.sum(v * v, axis=2)
        inside = (cols[None, :] < B) & (rows[:, None] < B)
        same = (y_j[None, :] == y_i[:, None]) & inside
        is_pos = same & (cols[None, :] != rows[:, None])
        is_neg = ~same & inside
        cand_pos = tl.where(is_pos, d2, -1.0)
        cand_neg = tl.where(is_neg, d2, float("inf"))
        tile_pos = tl.max(cand_pos, axis=1)
        tile_neg = tl.min(cand_neg, axis=1)
        arg_pos = j0 + tl.argmax(cand_pos, axis=1, tie_break_left=True).to(tl.int64)
        arg_neg = j0 + tl.argmin(cand_neg, axis=1, tie_break_left=True).to(tl.int64)
        take_pos = tile_pos > best_pos
        take_neg = tile_neg < best_neg
        pos = tl.where(take_pos, arg_pos, pos)
        neg = tl.where(take_neg, arg_neg, neg)
        best_pos = tl.where(take_pos, tile_pos, best_pos)
        best_neg = tl.where(take_neg, tile_neg, best_neg)
    tl.store(pos_ptr + rows, pos, mask=rows < B)
    tl.store(neg_ptr + rows, neg, mask=rows < B)
    tl.store(d2p_ptr + rows, best_pos, mask=rows < B)
    tl.store(d2n_ptr + rows, best_neg, mask=rows < B)


@triton.jit
def _batch_hard_bwd_kernel(
    g_ptr,
    e_ptr,
    pos_ptr,
    neg_ptr,
    acc_ptr,
    B,
    E,
    margin,
    SQUARED: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Adds each active anchor's gradient to its own row and to its positive's and negative's
    rows of the float accumulator (atomics: rows are shared between anchors)."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS).to(tl.int64)
    p = tl.load(pos_ptr + rows, mask=rows < B, other=-1)
    n = tl.load(neg_ptr + rows, mask=rows < B, other=-1)
    valid = (rows < B) & (p >= 0) & (n >= 0)
    p = tl.where(valid, p, 0)
    n = tl.where(valid, n, 0)
    g = tl.load(g_ptr + rows, mask=valid, other=0.0).to(COMPUTE)
    d2p = tl.zeros([ROWS], COMPUTE)
    d2n = tl.zeros([ROWS], COMPUTE)
    for k0 in range(0, E, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mask = valid[:, None] & (k[None, :] < E)
        a = tl.load(e_ptr + rows[:, None] * E + k[None, :], mask=mask, other=0.0).to(COMPUTE)
        vp = a - tl.load(e_ptr + p[:, None] * E + k[None, :], mask=mask, other=0.0).to(COMPUTE)
        vn = a - tl.load(e_ptr + n[:, None] * E + k[None, :], mask=mask, other=0.0).to(COMPUTE)
        d2p += tl.sum(vp * vp, axis=1)
        d2n += tl.sum(vn * vn, axis=1)
    if SQUARED:
        dp, dn = d2p, d2n
        cp, cn = 2.0 * g, 2.0 * g
    else:
        dp, dn = tl.sqrt(d2p), tl.sqrt(d2n)
        cp = tl.where(dp > 0, g / tl.where(dp > 0, dp, 1.0), 0.0)
        cn = tl.where(dn > 0, g / tl.where(dn > 0, dn, 1.0), 0.0)
    active = valid & (dp - dn + margin > 0)  # relu's gradient
    cp = tl.where(active, cp, 0.0)
    cn = tl.where(active, cn, 0.0)
    for k0 in range(0, E, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mask = active[:, None] & (k[None, :] < E)
        a = tl.load(e_ptr + rows[:, None] * E + k[None, :], mask=mask, other=0.0).to(COMPUTE)
        up = (a - tl.load(e_ptr + p[:, None] * E + k[None, :], mask=mask, other=0.0).to(COMPUTE)) * cp[:, None]
        un = (a - tl.load(e_ptr + n[:, None] * E + k[None, :], mask=mask, other=0.0).to(COMPUTE)) * cn[:, None]
        tl.atomic_add(acc_ptr + rows[:, None] * E + k[None, :], up - un, mask=mask)
        tl.atomic_add(acc_ptr + p[:, None] * E + k[None, :], -up, mask=mask)
        tl.atomic_add(acc_ptr + n[:, None] * E + k[None, :], un, mask=mask)


# ---------------------------------------------------------------------------------------
# launchers: checked arguments (fastgen/ops/triplet.py); acc is the accumulation dtype


def _reduce(per_row: torch.Tensor, reduction: str, dtype: torch.dtype, count=None) -> torch.Tensor:
    if reduction == "none":
        return per_row.to(dtype)
    total = per_row.sum()
    if reduction == "mean":
        total = total / (per_row.shape[0] if count is None else count)
    return total.to(dtype)


def _row_grads(grad, reduction, rows, compute, count=None):
    if reduction == "none":
        return grad.to(compute).contiguous()
    scale = 1.0 / (rows if count is None else count) if reduction == "mean" and rows else 1.0
    return (grad.to(compute) * scale).expand(rows).contiguous()


def triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap, reduction, acc):
    a, pos, neg = anchor.contiguous(), positive.contiguous(), negative.contiguous()
    rows, dim = a.shape
    loss = torch.empty(rows, dtype=acc, device=a.device)
    if rows:
        launch(_triplet_fwd_kernel)[(triton.cdiv(rows, ROWS),)](
            a,
            pos,
            neg,
            loss,
            rows,
            dim,
            float(margin),
            float(eps),
            float(p),
            SWAP=bool(swap),
            NORM=_norm_kind(p),
            BLOCK=BLOCK,
            ROWS=ROWS,
            COMPUTE=tl_dtype(acc),
        )
    return _reduce(loss, reduction, a.dtype)


def triplet_margin_loss_backward(grad, anchor, positive, negative, margin, p, eps, swap, reduction, acc):
    a, pos, neg = anchor.contiguous(), positive.contiguous(), negative.contiguous()
    rows, dim = a.shape
    grads = tuple(torch.empty_like(a) for _ in range(3))
    if rows:
        launch(_triplet_bwd_kernel)[(triton.cdiv(rows, ROWS),)](
            _row_grads(grad, reduction, rows, acc),
            a,
            pos,
            neg,
            *grads,
            rows,
            dim,
            float(margin),
            float(eps),
            float(p),
            SWAP=bool(swap),
            NORM=_norm_kind(p),
            BLOCK=BLOCK,
            ROWS=ROWS,
            COMPUTE=tl_dtype(acc),
            **BWD_LAUNCH,
        )
    return grads


def contrastive_loss(x1, x2, y, margin, eps, reduction, acc):
    a, b = x1.contiguous(), x2.contiguous()
    rows, dim = a.shape
    loss = torch.empty(rows, dtype=acc, device=a.device)
    if rows:
        launch(_contrastive_fwd_kernel)[(triton.cdiv(rows, ROWS),)](
            a,
            b,
            y.to(acc).contiguous(),
            loss,
            rows,
            dim,
            float(margin),
            float(eps),
            BLOCK=BLOCK,
            ROWS=ROWS,
            COMPUTE=tl_dtype(acc),
        )
    return _reduce(loss, reduction, a.dtype)


def contrastive_loss_backward(grad, x1, x2, y, margin, eps, reduction, y_grad, acc):
    a, b = x1.contiguous(), x2.contiguous()
    rows, dim = a.shape
    compute = acc
    g1, g2 = torch.empty_like(a), torch.empty_like(a)
    gy = torch.empty(rows, dtype=compute, device=a.device)
    if rows:
        launch(_contrastive_bwd_kernel)[(triton.cdiv(rows, ROWS),)](
            _row_grads(grad, reduction, rows, compute),
            a,
            b,
            y.to(compute).contiguous(),
            g1,
            g2,
            gy,
            rows,
            dim,
            float(margin),
            float(eps),
            BLOCK=BLOCK,
            ROWS=ROWS,
            COMPUTE=tl_dtype(acc),
        )
    return g1, g2, (gy.to(y.dtype) if y_grad else a.new_empty((0,)))


def batch_hard_triplet_loss(embeddings, labels, margin, squared, reduction, acc):
    e = embeddings.contiguous()
    rows, dim = e.shape
    compute = acc
    pos = torch.full((rows,), -1, dtype=torch.int64, device=e.device)
    neg = torch.full_like(pos, -1)
    d2p = torch.zeros(rows, dtype=compute, device=e.device)
    d2n = torch.zeros_like(d2p)
    if rows:
        launch(_batch_hard_fwd_kernel)[(triton.cdiv(rows, BLOCK_I),)](
            e,
            labels.long().contiguous(),
            pos,
            neg,
            d2p,
            d2n,
            rows,
            dim,
            BLOCK_I=BLOCK_I,
            BLOCK_J=BLOCK_J,
            BLOCK_K=BLOCK_K,
            COMPUTE=tl_dtype(acc),
        )
    valid = (pos >= 0) & (neg >= 0)
    dp, dn = (d2p, d2n) if squared else (d2p.clamp_min(0).sqrt(), d2n.clamp_min(0).sqrt())
    per_row = torch.where(valid, torch.relu(dp - dn + margin), 0.0)
    return _reduce(per_row, reduction, e.dtype, valid.sum().clamp_min(1)), pos, neg


def batch_hard_triplet_loss_backward(grad, embeddings, positive, negative, margin, squared, reduction, acc):
    e = embeddings.contiguous()
    rows, dim = e.shape
    compute = acc
    total = torch.zeros((rows, dim), dtype=compute, device=e.device)
    if rows:
        count = ((positive >= 0) & (negative >= 0)).sum().clamp_min(1)
        g = _row_grads(grad, reduction, rows, compute, count)
        launch(_batch_hard_bwd_kernel)[(triton.cdiv(rows, ROWS),)](
            g,
            e,
            positive.contiguous(),
            negative.contiguous(),
            total,
            rows,
            dim,
            float(margin),
            SQUARED=bool(squared),
            ROWS=ROWS,
            BLOCK=BLOCK,
            COMPUTE=tl_dtype(compute),
            **BWD_LAUNCH,
        )
    return total.to(e.dtype)


def aot_specs():
    """(name, kernel, signature, constexprs) for every specialization the launchers use, for the
    ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    scalars = {"margin": "fp32", "eps": "fp32", "p": "fp32"}
    for name, ptr, acc, compute in AOT_DTYPES:
        rows = {"BLOCK": BLOCK, "ROWS": ROWS, "COMPUTE": compute}
        fwd_sig = aot_signature(_triplet_fwd_kernel, ptr, acc, {"loss_ptr": "*acc", **scalars})
        bwd_sig = aot_signature(_triplet_bwd_kernel, ptr, acc, {"g_ptr": "*acc", **scalars})
        # every norm in float32; the other dtypes share the code paths, so p = 2 stands for them
        for norm in (L2, L1, LINF, GENERAL) if name == "fp32" else (L2,):
            for swap in (False, True):
                consts = dict(rows, SWAP=swap, NORM=norm)
                specs.append((f"triplet_fwd[{name},norm={norm},swap={swap}]", _triplet_fwd_kernel, fwd_sig, consts))
                specs.append(
                    (f"triplet_bwd[{name},norm={norm},swap={swap}]", _triplet_bwd_kernel, bwd_sig, consts, BWD_LAUNCH)
                )
        pair = {"y_ptr": "*acc", "margin": "fp32", "eps": "fp32"}
        sig = aot_signature(_contrastive_fwd_kernel, ptr, acc, {"loss_ptr": "*acc", **pair})
        specs.append((f"contrastive_fwd[{name}]", _contrastive_fwd_kernel, sig, dict(rows)))
        sig = aot_signature(_contrastive_bwd_kernel, ptr, acc, {"g_ptr": "*acc", "gy_ptr": "*acc", **pair})
        specs.append((f"contrastive_bwd[{name}]", _contrastive_bwd_kernel, sig, dict(rows)))
        tiles = {"BLOCK_I": BLOCK_I, "BLOCK_J": BLOCK_J, "BLOCK_K": BLOCK_K, "COMPUTE": compute}
        indices = {"pos_ptr": "*i64", "neg_ptr": "*i64"}
        sig = aot_signature(
            _batch_hard_fwd_kernel, ptr, acc, {"y_ptr": "*i64", **indices, "d2p_ptr": "*acc", "d2n_ptr": "*acc"}
        )
        specs.append((f"batch_hard_fwd[{name}]", _batch_hard_fwd_kernel, sig, tiles))
        sig = aot_signature(
            _batch_hard_bwd_kernel, ptr, acc, {"g_ptr": "*acc", **indices, "acc_ptr": "*acc", "margin": "fp32"}
        )
        for squared in (False, True):
            consts = {"SQUARED": squared, "ROWS": ROWS, "BLOCK": BLOCK, "COMPUTE": compute}
            specs.append((f"batch_hard_bwd[{name},squared={squared}]", _batch_hard_bwd_kernel, sig, consts, BWD_LAUNCH))
    return specs
