"""Triton kernels for the Progressive GAN pixel norm (the CUDA side of csrc/pixel_norm.cpp).

x is walked as (N, C, P) in the layout of fastgen/ops/pixel_norm.py::pixel_layout: planar
(channel stride P, pixel stride 1) or interleaved (channel stride 1, pixel stride C). One
program normalizes BLOCK_P pixels of one sample: a loop over the channels for the sums, a
second for the outputs (the tile is still in cache).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype


@triton.jit
def _tile(c0, C, P, stride_c, stride_p, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """Offsets and mask of channels [c0, c0 + BLOCK_C) x this program's BLOCK_P pixels."""
    base = tl.program_id(0).to(tl.int64) * C * P
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = c0 + tl.arange(0, BLOCK_C)
    offs = base + c[:, None].to(tl.int64) * stride_c + p[None, :].to(tl.int64) * stride_p
    return offs, (c < C)[:, None] & (p < P)[None, :]


@triton.jit
def _pixel_norm_fwd_kernel(
    x_ptr,
    y_ptr,
    C,
    P,
    stride_c,
    stride_p,
    eps,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    acc = tl.zeros([BLOCK_P], COMPUTE)
    for c0 in range(0, C, BLOCK_C):
        offs, mask = _tile(c0, C, P, stride_c, stride_p, BLOCK_C, BLOCK_P)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        acc += tl.sum(x * x, axis=0)
    r = 1.0 / tl.sqrt(acc / C + eps)
    for c0 in range(0, C, BLOCK_C):
        offs, mask = _tile(c0, C, P, stride_c, stride_p, BLOCK_C, BLOCK_P)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        tl.store(y_ptr + offs, (x * r[None, :]).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pixel_norm_bwd_kernel(
    g_ptr,
    x_ptr,
    gx_ptr,
    C,
    P,
    stride_c,
    stride_p,
    eps,
    BLOCK_C: tl.constexpr,
    BLOCK_P: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # gx = r g - r^3 x mean_c(g x)
    sq = tl.zeros([BLOCK_P], COMPUTE)
    dot = tl.zeros([BLOCK_P], COMPUTE)
    for c0 in range(0, C, BLOCK_C):
        offs, mask = _tile(c0, C, P, stride_c, stride_p, BLOCK_C, BLOCK_P)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        sq += tl.sum(x * x, axis=0)
        dot += tl.sum(x * g, axis=0)
    r = 1.0 / tl.sqrt(sq / C + eps)
    k = -r * r * r * dot / C
    for c0 in range(0, C, BLOCK_C):
        offs, mask = _tile(c0, C, P, stride_c, stride_p, BLOCK_C, BLOCK_P)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
        tl.store(gx_ptr + offs, (r[None, :] * g + k[None, :] * x).to(gx_ptr.dtype.element_ty), mask=mask)


def _geometry(x: torch.Tensor):
    """(N, C, P, stride_c, stride_p, BLOCK_C, BLOCK_P) for x in pixel_layout."""
    n, c = x.shape[0], x.shape[1]
    p = x.numel() // (n * c) if n * c else 0
    interleaved = not x.is_contiguous() or p == 1
    stride_c, stride_p = (1, c) if interleaved else (p, 1)
    block_c = min(64, triton.next_power_of_2(max(c, 1)))
    block_p = max(1, min(triton.next_power_of_2(max(p, 1)), 4096 // block_c))
    return n, c, p, stride_c, stride_p, block_c, block_p


# The launchers take checked tensors in pixel_layout (fastgen/ops/pixel_norm.py), grad in x_'s
# layout; acc is the accumulation dtype.


def pixel_norm(x_, eps, acc):
    x = x_
    y = torch.empty_like(x_)
    if x.numel():
        n, c, p, sc, sp, bc, bp = _geometry(x_)
        launch(_pixel_norm_fwd_kernel)[(n, triton.cdiv(p, bp))](
            x_,
            y,
            c,
            p,
            sc,
            sp,
            float(eps),
            BLOCK_C=bc,
            BLOCK_P=bp,
            COMPUTE=tl_dtype(acc),
        )
    return y


def pixel_norm_backward(g_, x_, eps, acc):
    x = x_
    gx = torch.empty_like(x_)
    if x.numel():
        n, c, p, sc, sp, bc, bp = _geometry(x_)
        launch(_pixel_norm_bwd_kernel)[(n, triton.cdiv(p, bp))](
            g_,
            x_,
            gx,
            c,
            p,
            sc,
            sp,
            float(eps),
            BLOCK_C=bc,
            BLOCK_P=bp,
            COMPUTE=tl_dtype(acc),
        )
    return gx


def aot_specs():
    """(name, kernel, signature, constexprs) for the ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    for dtype, ptr, acc, compute in AOT_DTYPES:
        for name, kernel in (("pixel_norm_fwd", _pixel_norm_fwd_kernel), ("pixel_norm_bwd", _pixel_norm_bwd_kernel)):
            sig = aot_signature(kernel, ptr, acc, {"eps": "fp32"})
            for bc, bp in ((64, 64), (16, 256)):
                specs.append(
                    (f"{name}[{dtype},{bc}x{bp}]", kernel, sig, {"BLOCK_C": bc, "BLOCK_P": bp, "COMPUTE": compute})
                )
    return specs
