"""Triton kernels for the margin softmax (the CUDA side of csrc/margin_softmax.cpp).

Forward: one fused kernel computes tiles of cos = x_n W^T with tl.dot (never stored), puts the
margin logit in the target column and keeps an online log-sum-exp per row; each program covers
a block of rows and a split of the classes, and the splits' (max, sum) are merged afterwards.
Backward: per chunk of classes, a fused kernel recomputes the cosines and writes
d(loss)/d(cos) / ||w_c|| into a chunk buffer, cuBLAS does the two contractions (grad of the
normalized embeddings, grad of the chunk's weight rows), and a row kernel applies the
normalizations' backward. The B target logits (acos, margins) are torch ops on (B,) tensors,
shared with the double backward (fastgen/ops/margin_softmax.py, which passes the launchers its
target_logit function bound to the call's margins).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype

NORM_EPS = 1e-12  # F.normalize's eps
BLOCK_B, BLOCK_C, BLOCK_E = 32, 64, 32
ROW_BLOCK_E = 256
# The (BLOCK_B, BLOCK_C) logit tiles: with 4 warps and Triton's default 3-stage pipelining of
# the E loop they need 255 registers and spill (fastgen.triton_kernels.aot --report); 8 warps
# and no pipelining fit in 80-160 on sm_80 and sm_90.
TILE_LAUNCH = {"num_warps": 8, "num_stages": 1}


@triton.jit
def _row_norm_kernel(
    x_ptr, norm_ptr, out_ptr, E, eps, WRITE_OUT: tl.constexpr, BLOCK: tl.constexpr, COMPUTE: tl.constexpr
):
    """norm[r] = ||x[r]||; with WRITE_OUT, out[r] = x[r] / max(norm, eps) (as F.normalize)."""
    row = tl.program_id(0).to(tl.int64)
    acc = tl.zeros([BLOCK], COMPUTE)
    for e0 in range(0, E, BLOCK):
        cols = e0 + tl.arange(0, BLOCK)
        v = tl.load(x_ptr + row * E + cols, mask=cols < E, other=0.0).to(COMPUTE)
        acc += v * v
    norm = tl.sqrt(tl.sum(acc, axis=0))
    tl.store(norm_ptr + row, norm)
    if WRITE_OUT:
        denom = tl.maximum(norm, eps)
        for e0 in range(0, E, BLOCK):
            cols = e0 + tl.arange(0, BLOCK)
            v = tl.load(x_ptr + row * E + cols, mask=cols < E, other=0.0).to(COMPUTE)
            tl.store(out_ptr + row * E + cols, v / denom, mask=cols < E)


@triton.jit
def _cos_tile(
    xn_ptr,
    w_ptr,
    rows,
    cols,
    B,
    C,
    E,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_E: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """x_n[rows] . w[cols] (raw weight rows), a (BLOCK_B, BLOCK_C) tile in COMPUTE."""
    acc = tl.zeros([BLOCK_B, BLOCK_C], COMPUTE)
    ks = tl.arange(0, BLOCK_E)
    for e0 in range(0, E, BLOCK_E):
        k = e0 + ks
        a = tl.load(xn_ptr + rows[:, None] * E + k[None, :], mask=(rows[:, None] < B) & (k[None, :] < E), other=0.0)
        w = tl.load(w_ptr + cols[:, None] * E + k[None, :], mask=(cols[:, None] < C) & (k[None, :] < E), other=0.0)
        acc += tl.dot(a.to(COMPUTE), tl.trans(w.to(COMPUTE)), input_precision="ieee")
    return acc


@triton.jit
def _margin_lse_kernel(
    xn_ptr,
    w_ptr,
    w_inv_ptr,
    local_ptr,
    target_ptr,
    max_ptr,
    sum_ptr,
    B,
    C,
    E,
    classes_per_split,
    splits,
    s,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_E: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """Online (max, sum of exp) of the logits of rows block pid(0) over classes split pid(1)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
    split = tl.program_id(1)
    local = tl.load(local_ptr + rows, mask=rows < B, other=-1)
    target = tl.load(target_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    run_max = tl.full([BLOCK_B], float("-inf"), COMPUTE)
    run_sum = tl.zeros([BLOCK_B], COMPUTE)
    c_begin = split * classes_per_split
    c_end = tl.minimum(C, c_begin + classes_per_split)
    for c0 in range(c_begin, c_end, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C).to(tl.int64)
        dots = _cos_tile(xn_ptr, w_ptr, rows, cols, B, C, E, BLOCK_B, BLOCK_C, BLOCK_E, COMPUTE)
        scale = s * tl.load(w_inv_ptr + cols, mask=cols < C, other=0.0).to(COMPUTE)
        logits = dots * scale[None, :]
        logits = tl.where(cols[None, :] == local[:, None], target[:, None], logits)
        logits = tl.where(cols[None, :] < c_end, logits, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(logits, axis=1))
        run_sum = run_sum * tl.exp(run_max - new_max) + tl.sum(tl.exp(logits - new_max[:, None]), axis=1)
        run_max = new_max
    tl.store(max_ptr + rows * splits + split, run_max, mask=rows < B)
    tl.store(sum_ptr + rows * splits + split, run_sum, mask=rows < B)


@triton.jit
def _margin_grad_kernel(
    xn_ptr,
    w_ptr,
    w_inv_ptr,
    coef_ptr,
    lse_hi_ptr,
    lse_lo_ptr,
    local_ptr,
    target_grad_ptr,
    g_ptr,
    B,
    n,
    E,
    c0,
    s,
    BLOCK_B: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_E: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """G[b, c] = d(loss)/d(cos[b, c0 + c]) / ||w_c|| for a (BLOCK_B, BLOCK_C) tile of the chunk
    [c0, c0 + n) (w_ptr points at row c0); G is (B, n)."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    dots = _cos_tile(xn_ptr, w_ptr, rows, cols, B, n, E, BLOCK_B, BLOCK_C, BLOCK_E, COMPUTE)
    inv = tl.load(w_inv_ptr + cols, mask=cols < n, other=0.0).to(COMPUTE)
    coef = tl.load(coef_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    # The float64 lse as hi + lo in COMPUTE: (logit - hi) is exact where p is large.
    lse_hi = tl.load(lse_hi_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    lse_lo = tl.load(lse_lo_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    local = tl.load(local_ptr + rows, mask=rows < B, other=-1)
    target_grad = tl.load(target_grad_ptr + rows, mask=rows < B, other=0.0).to(COMPUTE)
    p = tl.exp((dots * (s * inv)[None, :] - lse_hi[:, None]) - lse_lo[:, None])
    g = tl.where(coef[:, None] != 0, coef[:, None] * p * inv[None, :], 0.0)
    g = tl.where((c0 + cols)[None, :] == local[:, None], target_grad[:, None] * inv[None, :], g)
    tl.store(g_ptr + rows[:, None] * n + cols[None, :], g, mask=(rows[:, None] < B) & (cols[None, :] < n))


@triton.jit
def _project_rows_kernel(
    g_ptr, v_ptr, denom_ptr, post_ptr, project_ptr, out_ptr, E, BLOCK: tl.constexpr, COMPUTE: tl.constexpr
):
    """out[r] = (g[r] - u (u . g[r])) * post[r] with u = v[r] / denom[r] (the backward of
    x / max(||x||, eps)); without the projection where project[r] == 0."""
    row = tl.program_id(0).to(tl.int64)
    denom = tl.load(denom_ptr + row).to(COMPUTE)
    post = tl.load(post_ptr + row).to(COMPUTE)
    project = tl.load(project_ptr + row)
    acc = tl.zeros([BLOCK], COMPUTE)
    for e0 in range(0, E, BLOCK):
        cols = e0 + tl.arange(0, BLOCK)
        g = tl.load(g_ptr + row * E + cols, mask=cols < E, other=0.0).to(COMPUTE)
        u = tl.load(v_ptr + row * E + cols, mask=cols < E, other=0.0).to(COMPUTE) / denom
        acc += u * g
    dot = tl.where(project != 0, tl.sum(acc, axis=0), 0.0)
    for e0 in range(0, E, BLOCK):
        cols = e0 + tl.arange(0, BLOCK)
        g = tl.load(g_ptr + row * E + cols, mask=cols < E, other=0.0).to(COMPUTE)
        u = tl.load(v_ptr + row * E + cols, mask=cols < E, other=0.0).to(COMPUTE) / denom
        tl.store(out_ptr + row * E + cols, ((g - u * dot) * post).to(out_ptr.dtype.element_ty), mask=cols < E)


# ---------------------------------------------------------------------------------------
# launchers


def _row_norms(x: torch.Tensor, normalized: bool, compute: torch.dtype):
    rows, cols = x.shape
    norm = torch.empty(rows, dtype=compute, device=x.device)
    out = torch.empty((rows, cols), dtype=compute, device=x.device) if normalized else norm
    if rows:
        launch(_row_norm_kernel)[(rows,)](
            x, norm, out, cols, NORM_EPS, WRITE_OUT=normalized, BLOCK=ROW_BLOCK_E, COMPUTE=tl_dtype(compute)
        )
    return (out, norm) if normalized else norm


def _targets(labels, class_start, classes, ignore_index):
    local = labels.long() - class_start
    ignored = labels == ignore_index
    has_target = ~ignored & (local >= 0) & (local < classes)
    return ignored, has_target, torch.where(has_target, local, -1)


def _splits(rows: int, classes: int) -> int:
    """Class splits per row block: enough programs to fill a GPU (a few hundred)."""
    row_blocks = triton.cdiv(rows, BLOCK_B)
    return max(1, min(triton.cdiv(classes, BLOCK_C), triton.cdiv(512, row_blocks)))


# The launchers take checked arguments (labels included); target_logit(cos_t) is the margin
# logit of target cosines (float64 in, float64 out, differentiable); compute the accumulation
# dtype; lse_dtype that of the log-sum-exp.


def margin_softmax(embeddings, weight, labels, class_start, s, ignore_index, target_logit, compute, lse_dtype):
    batch, emb = embeddings.shape
    classes = weight.shape[0]
    embeddings, weight = embeddings.contiguous(), weight.contiguous()
    if batch == 0:
        rows = torch.zeros(batch, dtype=compute, device=embeddings.device)
        return torch.zeros(batch, dtype=lse_dtype, device=embeddings.device), rows, rows.clone()
    xn, _ = _row_norms(embeddings, normalized=True, compute=compute)
    w_inv = 1.0 / _row_norms(weight, normalized=False, compute=compute).clamp_min(NORM_EPS)
    ignored, has_target, local = _targets(labels, class_start, classes, ignore_index)
    index = local.clamp_min(0)
    cos_t = ((xn * weight[index].to(compute)).sum(1) * w_inv[index]).to(compute)
    target = target_logit(cos_t.double()).to(compute)
    cos_t = torch.where(has_target, cos_t, 0.0)
    target = torch.where(has_target, target, 0.0)
    splits = _splits(batch, classes)
    per_split = triton.cdiv(triton.cdiv(classes, splits), BLOCK_C) * BLOCK_C
    splits = triton.cdiv(classes, per_split)
    maxes = torch.empty((batch, splits), dtype=compute, device=embeddings.device)
    sums = torch.empty_like(maxes)
    launch(_margin_lse_kernel)[(triton.cdiv(batch, BLOCK_B), splits)](
        xn,
        weight,
        w_inv,
        local,
        target,
        maxes,
        sums,
        batch,
        classes,
        emb,
        per_split,
        splits,
        float(s),
        BLOCK_B=BLOCK_B,
        BLOCK_C=BLOCK_C,
        BLOCK_E=BLOCK_E,
        COMPUTE=tl_dtype(compute),
        **TILE_LAUNCH,
    )
    # The splits' (max, sum) combined in float64: lse is float64 (see csrc/margin_softmax.cpp).
    maxes, sums = maxes.to(lse_dtype), sums.to(lse_dtype)
    top = maxes.max(1).values
    lse = top + torch.log((sums * torch.exp(maxes - top[:, None])).sum(1))
    return torch.where(ignored, 0.0, lse), target, cos_t


def _target_grads(target_cos, lse, grad_lse, grad_target, has_target, target_logit, compute):
    """d(loss)/d(target cosine) per row, as csrc/margin_softmax.cpp computes it."""
    with torch.enable_grad():
        c = target_cos.detach().double().requires_grad_()
        logit = target_logit(c)
        dlogit = torch.autograd.grad(logit.sum(), c)[0]
    p = torch.exp(logit.detach().to(compute).double() - lse.double())
    return torch.where(has_target, (grad_lse.double() * p + grad_target.double()) * dlogit, 0.0).to(compute)


def margin_softmax_backward(
    grad_lse,
    grad_target,
    embeddings,
    weight,
    labels,
    lse,
    target_cos,
    class_start,
    s,
    ignore_index,
    output_mask,
    target_logit,
    compute,
    lse_dtype,
):
    batch, emb = embeddings.shape
    classes = weight.shape[0]
    need_x, need_w = output_mask
    grad_emb = (
        torch.empty_like(embeddings, memory_format=torch.contiguous_format) if need_x else embeddings.new_empty((0,))
    )
    grad_w = weight.new_empty(weight.shape) if need_w else weight.new_empty((0,))
    if not (need_x or need_w):
        return grad_emb, grad_w
    if batch == 0:
        grad_w.zero_()
        return grad_emb, grad_w
    embeddings, weight = embeddings.contiguous(), weight.contiguous()
    zeros = torch.zeros(batch, dtype=compute, device=embeddings.device)
    gl = grad_lse.to(compute) if grad_lse is not None else zeros
    gt = grad_target.to(compute) if grad_target is not None else zeros
    ignored, has_target, local = _targets(labels, class_start, classes, ignore_index)
    coef = torch.where(ignored, 0.0, gl * s).contiguous()
    lse = lse.to(lse_dtype)
    lse_hi = lse.to(compute).contiguous()
    lse_lo = (lse - lse_hi.to(lse_dtype)).to(compute).contiguous()
    target_grad = _target_grads(target_cos, lse, gl, gt, has_target, target_logit, compute).contiguous()
    xn, x_norm = _row_norms(embeddings, normalized=True, compute=compute)
    w_norm = _row_norms(weight, normalized=False, compute=compute)
    w_denom = w_norm.clamp_min(NORM_EPS)
    w_inv = 1.0 / w_denom
    w_project = (w_norm >= NORM_EPS).to(torch.int8)
    ones = torch.ones(max(classes, batch), dtype=compute, device=embeddings.device)
    grad_xn = torch.zeros((batch, emb), dtype=compute, device=embeddings.device) if need_x else None
    chunk = max(BLOCK_C, min(classes, (1 << 25) // max(batch, 1)))  # (B, chunk) buffer of 128 MiB at most
    buffer = torch.empty(batch * chunk, dtype=compute, device=embeddings.device)
    u_buffer = torch.empty((chunk, emb), dtype=compute, device=embeddings.device) if need_w else None
    for c0 in range(0, classes, chunk):
        n = min(chunk, classes - c0)
        g = buffer[: batch * n].view(batch, n)
        w_chunk = weight[c0 : c0 + n]
        launch(_margin_grad_kernel)[(triton.cdiv(batch, BLOCK_B), triton.cdiv(n, BLOCK_C))](
            xn,
            w_chunk,
            w_inv[c0 : c0 + n],
            coef,
            lse_hi,
            lse_lo,
            local,
            target_grad,
            g,
            batch,
            n,
            emb,
            c0,
            float(s),
            BLOCK_B=BLOCK_B,
            BLOCK_C=BLOCK_C,
            BLOCK_E=BLOCK_E,
            COMPUTE=tl_dtype(compute),
            **TILE_LAUNCH,
        )
        w_wide = w_chunk.to(compute)
        if need_x:
            grad_xn.addmm_(g, w_wide)
        if need_w:
            u = torch.mm(g.t(), xn, out=u_buffer[:n])
            launch(_project_rows_kernel)[(n,)](
                u,
                w_chunk,
                w_denom[c0 : c0 + n],
                ones,
                w_project[c0 : c0 + n],
                grad_w[c0 : c0 + n],
                emb,
                BLOCK=ROW_BLOCK_E,
                COMPUTE=tl_dtype(compute),
            )
    if need_x:
        launch(_project_rows_kernel)[(batch,)](
            grad_xn,
            xn,
            ones,
            1.0 / x_norm.clamp_min(NORM_EPS),
            (x_norm >= NORM_EPS).to(torch.int8),
            grad_emb,
            emb,
            BLOCK=ROW_BLOCK_E,
            COMPUTE=tl_dtype(compute),
        )
    return grad_emb, grad_w


def aot_specs():
    """(name, kernel, signature, constexprs) for every specialization the launchers use, for the
    ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    # The tile kernels' row vectors and chunk buffers are in the accumulation dtype.
    acc_rows = (
        "xn_ptr",
        "w_inv_ptr",
        "target_ptr",
        "max_ptr",
        "sum_ptr",
        "coef_ptr",
        "lse_hi_ptr",
        "lse_lo_ptr",
        "target_grad_ptr",
        "g_ptr",
    )
    tile_types = {
        kernel: {k: "*acc" for k in acc_rows if k in kernel.arg_names} | {"local_ptr": "*i64", "s": "fp32"}
        for kernel in (_margin_lse_kernel, _margin_grad_kernel)
    }
    for name, ptr, acc, compute in AOT_DTYPES:
        tiles = {"BLOCK_B": BLOCK_B, "BLOCK_C": BLOCK_C, "BLOCK_E": BLOCK_E, "COMPUTE": compute}
        for write_out in (True, False):
            sig = aot_signature(_row_norm_kernel, ptr, acc, {"norm_ptr": "*acc", "out_ptr": "*acc", "eps": "fp32"})
            specs.append(
                (
                    f"margin_row_norm[{name},out={write_out}]",
                    _row_norm_kernel,
                    sig,
                    {"WRITE_OUT": write_out, "BLOCK": ROW_BLOCK_E, "COMPUTE": compute},
                )
            )
        sig = aot_signature(_margin_lse_kernel, ptr, acc, tile_types[_margin_lse_kernel])
        specs.append((f"margin_lse[{name}]", _margin_lse_kernel, sig, dict(tiles), TILE_LAUNCH))
        sig = aot_signature(_margin_grad_kernel, ptr, acc, tile_types[_margin_grad_kernel])
        specs.append((f"margin_grad[{name}]", _margin_grad_kernel, sig, dict(tiles), TILE_LAUNCH))
        for out_name in ("weight", "embeddings"):
            # v: the weight rows (input dtype) or the normalized embeddings (accumulation dtype)
            sig = aot_signature(
                _project_rows_kernel,
                ptr,
                acc,
                {
                    "g_ptr": "*acc",
                    "denom_ptr": "*acc",
                    "post_ptr": "*acc",
                    "project_ptr": "*i8",
                    **({} if out_name == "weight" else {"v_ptr": "*acc"}),
                },
            )
            specs.append(
                (
                    f"margin_project[{name},{out_name}]",
                    _project_rows_kernel,
                    sig,
                    {"BLOCK": ROW_BLOCK_E, "COMPUTE": compute},
                )
            )
    return specs
