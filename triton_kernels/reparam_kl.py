"""Triton kernels for VAE reparameterization + KL (the CUDA side of csrc/reparam_kl.cpp).

Same math, same memory-layout rules (fastgen/_layout.py) and the same Philox noise
convention as csrc/common/philox.h, so a CUDA tensor and a CPU tensor given the same seed
get the same z (to float rounding).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype

# Noise blocks: 64 elements = 4 components x 16 Philox counters (csrc/common/philox.h).
NOISE_BLOCK = 64
NOISE_LANES = 16


@triton.jit
def _row_noise(seed, row_counter_base, col_start, BLOCK: tl.constexpr):
    """Normals for elements [col_start, col_start + BLOCK) of a row (col_start % 64 == 0):
    element 64 g + 16 k + i is component k of Philox counter row_counter_base + 16 g + i."""
    G: tl.constexpr = BLOCK // 64
    g = tl.arange(0, G)[:, None, None]
    k = tl.arange(0, 4)[None, :, None]
    i = tl.arange(0, 16)[None, None, :]
    counters = row_counter_base + (col_start // 64 + g) * 16 + i
    n0, n1, n2, n3 = tl.randn4x(seed, counters)
    noise = tl.where(k == 0, n0, tl.where(k == 1, n1, tl.where(k == 2, n2, n3)))
    return tl.reshape(noise, (BLOCK,))


@triton.jit
def _load_tile(mu_ptr, logvar_ptr, base, col_start, cols, BLOCK: tl.constexpr, COMPUTE: tl.constexpr):
    """Columns, their in-row mask, mu, logvar and std = exp(logvar / 2) of one tile of a row."""
    col = col_start + tl.arange(0, BLOCK)
    inside = col < cols
    mu = tl.load(mu_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
    logvar = tl.load(logvar_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
    return col, inside, mu, logvar, tl.exp(0.5 * logvar)


@triton.jit
def _load_eps(
    eps_ptr,
    seed,
    base,
    col,
    inside,
    row_counter_base,
    col_start,
    HAS_EPS: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    """eps for one tile: from the eps tensor, or the in-kernel Philox noise."""
    if HAS_EPS:
        eps = tl.load(eps_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
    else:
        eps = _row_noise(seed, row_counter_base, col_start, BLOCK).to(COMPUTE)
    return eps


@triton.jit
def _reparam_kl_fwd_kernel(
    mu_ptr,
    logvar_ptr,
    eps_ptr,
    seed_ptr,
    z_ptr,
    kl_part_ptr,
    cols,
    counters_per_row,
    chunks_per_row,
    HAS_EPS: tl.constexpr,
    WANT_Z: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # One program: one chunk of CHUNK elements of one row; writes z and the chunk's KL terms.
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    base = row * cols
    start = chunk * CHUNK
    acc = tl.zeros([BLOCK], COMPUTE)
    seed = 0
    if WANT_Z and not HAS_EPS:
        seed = tl.load(seed_ptr)
    for off in range(0, CHUNK, BLOCK):
        col, inside, mu, logvar, std = _load_tile(mu_ptr, logvar_ptr, base, start + off, cols, BLOCK, COMPUTE)
        if WANT_Z:
            eps = _load_eps(
                eps_ptr, seed, base, col, inside, row * counters_per_row, start + off, HAS_EPS, BLOCK, COMPUTE
            )
            tl.store(z_ptr + base + col, (mu + std * eps).to(z_ptr.dtype.element_ty), mask=inside)
        acc += tl.where(inside, 1.0 + logvar - mu * mu - std * std, 0.0)
    tl.store(kl_part_ptr + row * chunks_per_row + chunk, tl.sum(acc, axis=0))


@triton.jit
def _reparam_kl_bwd_kernel(
    grad_z_ptr,
    grad_kl_row_ptr,
    mu_ptr,
    logvar_ptr,
    eps_ptr,
    seed_ptr,
    grad_mu_ptr,
    grad_logvar_ptr,
    grad_eps_ptr,
    cols,
    counters_per_row,
    HAS_GRAD_Z: tl.constexpr,
    HAS_EPS: tl.constexpr,
    EPS_GRAD: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    base = row * cols
    start = chunk * CHUNK
    gkl = tl.load(grad_kl_row_ptr + row).to(COMPUTE)
    seed = 0
    if HAS_GRAD_Z and not HAS_EPS:
        seed = tl.load(seed_ptr)
    for off in range(0, CHUNK, BLOCK):
        col, inside, mu, logvar, std = _load_tile(mu_ptr, logvar_ptr, base, start + off, cols, BLOCK, COMPUTE)
        grad_mu = gkl * mu
        grad_logvar = 0.5 * gkl * (std * std - 1.0)
        if HAS_GRAD_Z:
            grad_z = tl.load(grad_z_ptr + base + col, mask=inside, other=0.0).to(COMPUTE)
            eps = _load_eps(
                eps_ptr, seed, base, col, inside, row * counters_per_row, start + off, HAS_EPS, BLOCK, COMPUTE
            )
            grad_mu += grad_z
            grad_logvar += 0.5 * grad_z * std * eps
            if EPS_GRAD:
                tl.store(grad_eps_ptr + base + col, (grad_z * std).to(grad_eps_ptr.dtype.element_ty), mask=inside)
        tl.store(grad_mu_ptr + base + col, grad_mu.to(grad_mu_ptr.dtype.element_ty), mask=inside)
        tl.store(grad_logvar_ptr + base + col, grad_logvar.to(grad_logvar_ptr.dtype.element_ty), mask=inside)


def _tiles(cols: int) -> tuple[int, int]:
    """(BLOCK, CHUNK): BLOCK a power of two >= 64 (whole noise blocks), CHUNK a multiple of it."""
    block = max(NOISE_BLOCK, min(1024, triton.next_power_of_2(cols)))
    chunk = block * min(8, triton.cdiv(cols, block))
    return block, chunk


def _counters_per_row(cols: int) -> int:
    return NOISE_LANES * triton.cdiv(cols, NOISE_BLOCK)


def _reduce(kl_rows: torch.Tensor, reduction: str, dtype: torch.dtype) -> torch.Tensor:
    if reduction == "mean":
        kl_rows = kl_rows.mean()
    elif reduction == "sum":
        kl_rows = kl_rows.sum()
    return kl_rows.to(dtype)


# The launchers take checked tensors: mu_ batch-major dense (fastgen/_layout.py: batch_major),
# the others of its shape with its strides (or None); acc is the accumulation dtype.


def _forward(mu_, logvar_, eps_, seed, reduction, want_z, acc):
    mu = mu_
    rows = mu.shape[0]
    cols = mu.numel() // rows if rows else 0
    z = torch.empty_like(mu_) if want_z else None
    compute = acc
    if rows == 0 or cols == 0:
        kl_rows = torch.zeros(rows, dtype=compute, device=mu.device)
    else:
        block, chunk = _tiles(cols)
        chunks = triton.cdiv(cols, chunk)
        partials = torch.empty((rows, chunks), dtype=compute, device=mu.device)
        has_eps = eps_ is not None
        launch(_reparam_kl_fwd_kernel)[(rows, chunks)](
            mu_,
            logvar_,
            eps_ if has_eps else mu_,
            seed if seed is not None else mu_,
            z if want_z else mu_,
            partials,
            cols,
            _counters_per_row(cols),
            chunks,
            HAS_EPS=has_eps,
            WANT_Z=want_z,
            CHUNK=chunk,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
        kl_rows = partials.sum(1) * -0.5
    return z, _reduce(kl_rows, reduction, mu.dtype)


def reparam_kl(mu_, logvar_, eps_, seed, reduction, acc):
    return _forward(mu_, logvar_, eps_, seed, reduction, True, acc)


def kl_normal(mu_, logvar_, reduction, acc):
    return _forward(mu_, logvar_, None, None, reduction, False, acc)[1]


def reparam_kl_backward(grad_z_, grad_kl, mu_, logvar_, eps_, seed, reduction, eps_grad, acc):
    mu = mu_
    rows = mu.shape[0]
    cols = mu.numel() // rows if rows else 0
    compute = acc
    # d(loss)/d(kl[row]) for every row.
    if grad_kl is None:
        grad_kl_rows = torch.zeros(rows, dtype=compute, device=mu.device)
    elif reduction == "none":
        grad_kl_rows = grad_kl.to(compute).contiguous()
    else:
        scale = 1.0 / rows if (reduction == "mean" and rows) else 1.0
        grad_kl_rows = (grad_kl.to(compute) * scale).expand(rows).contiguous()
    grad_mu = torch.empty_like(mu_)
    grad_logvar = torch.empty_like(mu_)
    grad_eps = torch.empty_like(mu_) if eps_grad else mu.new_empty((0,))
    if rows and cols:
        block, chunk = _tiles(cols)
        chunks = triton.cdiv(cols, chunk)
        has_grad_z = grad_z_ is not None
        has_eps = eps_ is not None
        launch(_reparam_kl_bwd_kernel)[(rows, chunks)](
            grad_z_ if has_grad_z else mu_,
            grad_kl_rows,
            mu_,
            logvar_,
            eps_ if has_eps else mu_,
            seed if seed is not None else mu_,
            grad_mu,
            grad_logvar,
            grad_eps if eps_grad else mu_,
            cols,
            _counters_per_row(cols),
            HAS_GRAD_Z=has_grad_z,
            HAS_EPS=has_eps,
            EPS_GRAD=eps_grad,
            CHUNK=chunk,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
    return grad_mu, grad_logvar, grad_eps


def aot_specs():
    """(name, kernel, signature, constexprs) for every specialization the launchers use, for the
    ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    for dtype, ptr, acc, compute in AOT_DTYPES:
        fwd_sig = aot_signature(_reparam_kl_fwd_kernel, ptr, acc, {"seed_ptr": "*i64", "kl_part_ptr": "*acc"})
        bwd_sig = aot_signature(_reparam_kl_bwd_kernel, ptr, acc, {"seed_ptr": "*i64", "grad_kl_row_ptr": "*acc"})
        for has_eps in (True, False):
            consts = {"HAS_EPS": has_eps, "WANT_Z": True, "CHUNK": 4096, "BLOCK": 512, "COMPUTE": compute}
            specs.append((f"reparam_kl_fwd[{dtype},eps={has_eps}]", _reparam_kl_fwd_kernel, fwd_sig, consts))
            consts = {
                "HAS_GRAD_Z": True,
                "HAS_EPS": has_eps,
                "EPS_GRAD": has_eps,
                "CHUNK": 4096,
                "BLOCK": 512,
                "COMPUTE": compute,
            }
            specs.append((f"reparam_kl_bwd[{dtype},eps={has_eps}]", _reparam_kl_bwd_kernel, bwd_sig, consts))
    return specs
