"""Triton kernels for the GAN training core (the CUDA side of csrc/grad_penalty.cpp):
the WGAN-GP interpolation and the gradient-norm penalty, forward and backward.

Same math and the same memory-layout rules (fastgen/_layout.py) as the C++ kernels. Every
kernel walks a batch-major dense tensor as rows of `cols` elements, one program per chunk of
a row; per-row sums go through a (rows, chunks) buffer of partials.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype

NORM_FLOOR = 1e-12  # under the squared norm, as csrc/grad_penalty.cpp


@triton.jit
def _interpolate_fwd_kernel(
    real_ptr,
    fake_ptr,
    alpha_ptr,
    out_ptr,
    cols,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    start = tl.program_id(1) * CHUNK
    base = row * cols
    a = tl.load(alpha_ptr + row).to(COMPUTE)
    for off in range(0, CHUNK, BLOCK):
        col = start + off + tl.arange(0, BLOCK)
        inside = col < cols
        r = tl.load(real_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
        f = tl.load(fake_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
        tl.store(out_ptr + base + col, (a * r + (1.0 - a) * f).to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _interpolate_bwd_kernel(
    grad_ptr,
    real_ptr,
    fake_ptr,
    alpha_ptr,
    grad_real_ptr,
    grad_fake_ptr,
    alpha_part_ptr,
    cols,
    chunks_per_row,
    WANT_REAL: tl.constexpr,
    WANT_FAKE: tl.constexpr,
    WANT_ALPHA: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    start = chunk * CHUNK
    base = row * cols
    a = tl.load(alpha_ptr + row).to(COMPUTE)
    acc = tl.zeros([BLOCK], COMPUTE)
    for off in range(0, CHUNK, BLOCK):
        col = start + off + tl.arange(0, BLOCK)
        inside = col < cols
        g = tl.load(grad_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
        if WANT_REAL:
            tl.store(grad_real_ptr + base + col, (a * g).to(grad_real_ptr.dtype.element_ty), mask=inside)
        if WANT_FAKE:
            tl.store(grad_fake_ptr + base + col, ((1.0 - a) * g).to(grad_fake_ptr.dtype.element_ty), mask=inside)
        if WANT_ALPHA:
            r = tl.load(real_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
            f = tl.load(fake_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
            acc += g * (r - f)
    if WANT_ALPHA:
        tl.store(alpha_part_ptr + row * chunks_per_row + chunk, tl.sum(acc, axis=0))


@triton.jit
def _sum_squares_kernel(
    grads_ptr,
    part_ptr,
    cols,
    chunks_per_row,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    start = chunk * CHUNK
    base = row * cols
    acc = tl.zeros([BLOCK], COMPUTE)
    for off in range(0, CHUNK, BLOCK):
        col = start + off + tl.arange(0, BLOCK)
        g = tl.load(grads_ptr + base + col, mask=col < cols, other=0.0).to(COMPUTE)
        acc += g * g
    tl.store(part_ptr + row * chunks_per_row + chunk, tl.sum(acc, axis=0))


@triton.jit
def _penalty_finalize_kernel(
    part_ptr,
    norms_ptr,
    penalty_ptr,
    rows,
    chunks_per_row,
    target,
    weight,
    ONE_SIDED: tl.constexpr,
    SQUARED: tl.constexpr,
    BLOCK_R: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # One program: the row sums, the norms and the batch mean.
    total = tl.zeros([BLOCK_R], COMPUTE)
    for r0 in range(0, rows, BLOCK_R):
        r = r0 + tl.arange(0, BLOCK_R)
        inside = r < rows
        s = tl.zeros([BLOCK_R], COMPUTE)
        for c in range(0, chunks_per_row):
            s += tl.load(part_ptr + r.to(tl.int64) * chunks_per_row + c, mask=inside, other=0.0)
        norm = tl.sqrt(s + 1e-12)
        tl.store(norms_ptr + r, norm, mask=inside)
        if SQUARED:
            term = s  # target 0: the squared norm itself (R1)
        else:
            h = norm - target
            if ONE_SIDED:
                h = tl.maximum(h, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN, as torch
            term = h * h
        total += tl.where(inside, term, 0.0)
    penalty = weight * tl.sum(total, axis=0) / rows
    tl.store(penalty_ptr, penalty.to(penalty_ptr.dtype.element_ty))


@triton.jit
def _penalty_bwd_kernel(
    grads_ptr,
    norms_ptr,
    gp_ptr,
    gn_ptr,
    out_ptr,
    cols,
    target,
    scale,
    HAS_GP: tl.constexpr,
    HAS_GN: tl.constexpr,
    ONE_SIDED: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # out = coef[row] * grads, coef = grad_penalty * scale * h / n + grad_norms[row] / n
    row = tl.program_id(0).to(tl.int64)
    start = tl.program_id(1) * CHUNK
    base = row * cols
    n = tl.load(norms_ptr + row).to(COMPUTE)
    coef = n * 0.0
    if HAS_GP:
        h = n - target
        if ONE_SIDED:
            h = tl.maximum(h, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN, as torch
        coef += tl.load(gp_ptr).to(COMPUTE) * scale * h / n
    if HAS_GN:
        coef += tl.load(gn_ptr + row).to(COMPUTE) / n
    for off in range(0, CHUNK, BLOCK):
        col = start + off + tl.arange(0, BLOCK)
        inside = col < cols
        g = tl.load(grads_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
        tl.store(out_ptr + base + col, (coef * g).to(out_ptr.dtype.element_ty), mask=inside)


# ---------------------------------------------------------------------------------------
# launchers


def _row_tiles(cols: int) -> tuple[int, int, int]:
    """(BLOCK, CHUNK, chunks per row): BLOCK a power of two, CHUNK up to 8 blocks."""
    block = max(16, min(1024, triton.next_power_of_2(max(cols, 1))))
    chunk = block * min(8, triton.cdiv(max(cols, 1), block))
    return block, chunk, triton.cdiv(cols, chunk)


def _rows_cols(t: torch.Tensor) -> tuple[int, int]:
    rows = t.shape[0]
    return rows, (t.numel() // rows if rows else 0)


# The launchers take checked tensors, batch-major dense (fastgen/_layout.py: batch_major) and,
# where several, with the same strides; acc is the accumulation dtype.


def interpolate(real_, fake_, alpha, acc):
    out = torch.empty_like(real_)
    rows, cols = _rows_cols(real_)
    if rows and cols:
        block, chunk, chunks = _row_tiles(cols)
        launch(_interpolate_fwd_kernel)[(rows, chunks)](
            real_,
            fake_,
            alpha.contiguous(),
            out,
            cols,
            CHUNK=chunk,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
    return out


def interpolate_backward(grad_, real_, fake_, alpha, output_mask, acc):
    """real_ and fake_ in grad_'s layout (read only for the gradient of alpha)."""
    grad = grad_
    want_real, want_fake, want_alpha = (bool(m) for m in output_mask)
    rows, cols = _rows_cols(grad_)
    grad_real = torch.empty_like(grad_) if want_real else grad.new_empty((0,))
    grad_fake = torch.empty_like(grad_) if want_fake else grad.new_empty((0,))
    if not (want_real or want_fake or want_alpha):
        return grad_real, grad_fake, alpha.new_empty((0,))
    block, chunk, chunks = _row_tiles(cols)
    partials = torch.zeros((rows, max(chunks, 1)), dtype=acc, device=grad.device)
    if rows and cols:
        launch(_interpolate_bwd_kernel)[(rows, chunks)](
            grad_,
            real_,
            fake_,
            alpha.contiguous(),
            grad_real if want_real else grad_,
            grad_fake if want_fake else grad_,
            partials,
            cols,
            chunks,
            WANT_REAL=want_real,
            WANT_FAKE=want_fake,
            WANT_ALPHA=want_alpha,
            CHUNK=chunk,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
    grad_alpha = partials.sum(1).to(alpha.dtype) if want_alpha else alpha.new_empty((0,))
    return grad_real, grad_fake, grad_alpha


def grad_penalty(grads_, target, weight, one_sided, with_grad, acc):
    grads = grads_
    rows, cols = _rows_cols(grads_)
    norms = torch.empty((rows,), dtype=acc, device=grads.device)
    penalty = torch.full((), float("nan"), dtype=grads.dtype, device=grads.device)
    if rows == 0:
        return penalty, norms, (torch.empty_like(grads_) if with_grad else grads.new_empty((0,)))
    block, chunk, chunks = _row_tiles(cols)
    partials = torch.zeros((rows, max(chunks, 1)), dtype=acc, device=grads.device)
    if cols:
        launch(_sum_squares_kernel)[(rows, chunks)](
            grads_,
            partials,
            cols,
            chunks,
            CHUNK=chunk,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
    launch(_penalty_finalize_kernel)[(1,)](
        partials,
        norms,
        penalty,
        rows,
        max(chunks, 1),
        float(target),
        float(weight),
        ONE_SIDED=bool(one_sided),
        SQUARED=target == 0,
        BLOCK_R=128,
        COMPUTE=tl_dtype(acc),
    )
    if not with_grad:
        return penalty, norms, grads.new_empty((0,))
    # d(penalty)/d(grads) for an upstream gradient of 1: the backward kernel's second pass.
    one = torch.ones((), dtype=grads.dtype, device=grads.device)
    return penalty, norms, grad_penalty_backward(one, None, grads_, norms, target, weight, one_sided, acc)


def grad_penalty_backward(grad_penalty, grad_norms, grads_, norms, target, weight, one_sided, acc):
    rows, cols = _rows_cols(grads_)
    out = torch.empty_like(grads_)
    if rows and cols:
        block, chunk, chunks = _row_tiles(cols)
        has_gp, has_gn = grad_penalty is not None, grad_norms is not None
        launch(_penalty_bwd_kernel)[(rows, chunks)](
            grads_,
            norms.contiguous(),
            grad_penalty.reshape(1) if has_gp else norms,
            grad_norms.contiguous() if has_gn else norms,
            out,
            cols,
            float(target),
            2.0 * weight / rows,
            HAS_GP=has_gp,
            HAS_GN=has_gn,
            ONE_SIDED=bool(one_sided),
            CHUNK=chunk,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
    return out


def aot_specs():
    """(name, kernel, signature, constexprs) for every specialization the launchers use, for the
    ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    for dtype, ptr, acc, compute in AOT_DTYPES:
        tiles = {"CHUNK": 8192, "BLOCK": 1024, "COMPUTE": compute}
        sig = aot_signature(_interpolate_fwd_kernel, ptr, acc)
        specs.append((f"interpolate_fwd[{dtype}]", _interpolate_fwd_kernel, sig, dict(tiles)))
        sig = aot_signature(_interpolate_bwd_kernel, ptr, acc, {"alpha_part_ptr": "*acc"})
        for mask in ((True, True, False), (True, True, True)):
            consts = dict(tiles, WANT_REAL=mask[0], WANT_FAKE=mask[1], WANT_ALPHA=mask[2])
            specs.append((f"interpolate_bwd[{dtype},alpha={mask[2]}]", _interpolate_bwd_kernel, sig, consts))
        sig = aot_signature(_sum_squares_kernel, ptr, acc, {"part_ptr": "*acc"})
        specs.append((f"sum_squares[{dtype}]", _sum_squares_kernel, sig, dict(tiles)))
        sig = aot_signature(
            _penalty_finalize_kernel,
            ptr,
            acc,
            {"part_ptr": "*acc", "norms_ptr": "*acc", "target": "fp32", "weight": "fp32"},
        )
        for one_sided, squared in ((False, False), (True, False), (False, True)):
            consts = {"ONE_SIDED": one_sided, "SQUARED": squared, "BLOCK_R": 128, "COMPUTE": compute}
            specs.append(
                (f"penalty_finalize[{dtype},one_sided={one_sided},r1={squared}]", _penalty_finalize_kernel, sig, consts)
            )
        sig = aot_signature(
            _penalty_bwd_kernel, ptr, acc, {"norms_ptr": "*acc", "gn_ptr": "*acc", "target": "fp32", "scale": "fp32"}
        )
        for one_sided in (False, True):
            consts = dict(tiles, HAS_GP=True, HAS_GN=True, ONE_SIDED=one_sided)
            specs.append((f"penalty_bwd[{dtype},one_sided={one_sided}]", _penalty_bwd_kernel, sig, consts))
    return specs
