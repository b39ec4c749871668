"""Triton kernels for PixelShuffle / PixelUnshuffle and PixelShuffle + PReLU (the CUDA side of
csrc/pixel_shuffle.cpp).

Same math and the same layout rule (fastgen.ops.pixel_shuffle.memory_format): a 4-D input whose
strides suggest channels_last is walked as NHWC and gives NHWC outputs; anything else is made
contiguous. Each program covers a tile of BLOCK_C channels x BLOCK_S positions of one image of
the big tensor (*, C, H*r, W*r); the unit-stride axis of the tile is the layout's (positions
for NCHW, channels for NHWC). The weight gradient of the PReLU is summed per tile and channel
into a (N, position tiles, C) buffer that the launcher reduces.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype


@triton.jit
def _tile(C, H, W, r, CHANNELS_LAST: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_S: tl.constexpr):
    """This program's tile: image n, channels c, the in-bounds mask, and the offsets of its big
    elements (n, c, s = oh * W*r + ow) in the big and the small tensor."""
    s = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2).to(tl.int64)
    inside = (c < C)[:, None] & (s < H * r * W * r)[None, :]
    Hr = H * r
    Wr = W * r
    oh = s // Wr
    ow = s % Wr
    h = oh // r
    w = ow // r
    k = c[:, None] * (r * r) + ((oh % r) * r + (ow % r))[None, :]  # small channel
    Cs = C * r * r
    if CHANNELS_LAST:
        big = (n * Hr * Wr + s[None, :]) * C + c[:, None]
        small = ((n * H + h[None, :]) * W + w[None, :]) * Cs + k
    else:
        big = (n * C + c[:, None]) * (Hr * Wr) + s[None, :]
        small = ((n * Cs + k) * H + h[None, :]) * W + w[None, :]
    return n, c, inside, big, small


@triton.jit
def _to_big_kernel(
    small_ptr,
    weight_ptr,
    big_ptr,
    C,
    H,
    W,
    r,
    weight_stride,
    HAS_PRELU: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # pixel_shuffle (HAS_PRELU=False) and pixel_shuffle_prelu: small -> big.
    n, c, inside, big, small = _tile(C, H, W, r, CHANNELS_LAST, BLOCK_C, BLOCK_S)
    x = tl.load(small_ptr + small, mask=inside, other=0.0).to(COMPUTE)
    if HAS_PRELU:
        # weight_stride is 0 for a single shared weight.
        a = tl.load(weight_ptr + c * weight_stride, mask=c < C, other=0.0).to(COMPUTE)
        x = tl.where(x > 0, x, a[:, None] * x)
    tl.store(big_ptr + big, x.to(big_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _to_small_kernel(
    big_ptr,
    x_ptr,
    weight_ptr,
    small_ptr,
    partial_ptr,
    C,
    H,
    W,
    r,
    weight_stride,
    HAS_PRELU: tl.constexpr,
    WANT_DX: tl.constexpr,
    WANT_DW: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # pixel_unshuffle (HAS_PRELU=False: small = big) and the backward of pixel_shuffle_prelu:
    # dx = x > 0 ? grad : a * grad, partial[n, tile, c] = sum over the tile of (x > 0 ? 0 : x * grad).
    n, c, inside, big, small = _tile(C, H, W, r, CHANNELS_LAST, BLOCK_C, BLOCK_S)
    g = tl.load(big_ptr + big, mask=inside, other=0.0).to(COMPUTE)
    if HAS_PRELU:
        x = tl.load(x_ptr + small, mask=inside, other=0.0).to(COMPUTE)
        a = tl.load(weight_ptr + c * weight_stride, mask=c < C, other=0.0).to(COMPUTE)
        positive = x > 0
        d = tl.where(positive, g, a[:, None] * g)
        if WANT_DW:
            part = tl.sum(tl.where(positive, 0.0, x * g), axis=1)
            row = n * tl.num_programs(0) + tl.program_id(0)
            tl.store(partial_ptr + row * C + c, part, mask=c < C)
    else:
        d = g
    if WANT_DX:
        tl.store(small_ptr + small, d.to(small_ptr.dtype.element_ty), mask=inside)


def _tiles(channels: int, positions: int, channels_last: bool) -> tuple[int, int]:
    """(BLOCK_C, BLOCK_S): a wide unit-stride axis, about 2048 elements a tile."""
    if channels_last:
        block_c = min(64, triton.next_power_of_2(max(channels, 1)))
        block_s = max(1, min(2048 // block_c, triton.next_power_of_2(max(positions, 1))))
    else:
        block_s = min(1024, triton.next_power_of_2(max(positions, 1)))
        block_c = max(1, min(2048 // block_s, triton.next_power_of_2(max(channels, 1))))
    return block_c, block_s


def _geometry(small_shape, channels: int, r: int):
    batch = 1
    for size in small_shape[:-3]:
        batch *= size
    return batch, channels, small_shape[-2], small_shape[-1]


def _launch(kernel, small_shape, channels, r, channels_last, acc, *args, **constexprs):
    batch, C, H, W = _geometry(small_shape, channels, r)
    positions = H * r * W * r
    block_c, block_s = _tiles(C, positions, channels_last)
    grid = (triton.cdiv(positions, block_s), triton.cdiv(C, block_c), batch)
    launch(kernel)[grid](
        *args,
        C,
        H,
        W,
        r,
        constexprs.pop("weight_stride", 0),
        CHANNELS_LAST=channels_last,
        BLOCK_C=block_c,
        BLOCK_S=block_s,
        COMPUTE=tl_dtype(acc),
        **constexprs,
    )
    return grid


# The launchers take checked arguments: the output's shape, the memory format the kernels walk
# and write (fastgen/ops/pixel_shuffle.py: memory_format), the output channels C of the shuffle,
# and acc, the accumulation dtype.


def shuffle(x, weight, r, channels, shape, fmt, acc):
    """pixel_shuffle, and pixel_shuffle_prelu when weight is given."""
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    small = x.contiguous(memory_format=fmt)
    has_prelu = weight is not None
    w = weight.contiguous() if has_prelu else small
    _launch(
        _to_big_kernel,
        x.shape,
        channels,
        r,
        fmt == torch.channels_last,
        acc,
        small,
        w,
        out,
        weight_stride=int(has_prelu and weight.numel() > 1),
        HAS_PRELU=has_prelu,
    )
    return out


def unshuffle(x, r, shape, fmt, acc):
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)
    if out.numel() == 0:
        return out
    big = x.contiguous(memory_format=fmt)
    _launch(
        _to_small_kernel,
        shape,
        x.shape[-3],
        r,
        fmt == torch.channels_last,
        acc,
        big,
        big,
        big,
        out,
        big,
        HAS_PRELU=False,
        WANT_DX=True,
        WANT_DW=False,
    )
    return out


def pixel_shuffle_prelu_backward(grad_output, x, weight, upscale_factor, input_grad, weight_grad, channels, fmt, acc):
    r = upscale_factor
    channels_last = fmt == torch.channels_last
    grad_input = (
        torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt) if input_grad else x.new_empty((0,))
    )
    compute = acc
    batch, C, H, W = _geometry(x.shape, channels, r)
    if x.numel() == 0 or not (input_grad or weight_grad):
        per_channel = torch.zeros(C, dtype=compute, device=x.device)
    else:
        small = x.contiguous(memory_format=fmt)
        big = grad_output.contiguous(memory_format=fmt)
        _, block_s = _tiles(C, H * r * W * r, channels_last)
        tiles = triton.cdiv(H * r * W * r, block_s)
        partials = torch.empty((batch, tiles, C) if weight_grad else (1,), dtype=compute, device=x.device)
        _launch(
            _to_small_kernel,
            x.shape,
            channels,
            r,
            channels_last,
            acc,
            big,
            small,
            weight.contiguous(),
            grad_input if input_grad else small,
            partials,
            weight_stride=int(weight.numel() > 1),
            HAS_PRELU=True,
            WANT_DX=input_grad,
            WANT_DW=weight_grad,
        )
        per_channel = partials.sum((0, 1)) if weight_grad else None
    if not weight_grad:
        return grad_input, weight.new_empty((0,))
    total = per_channel.sum() if weight.numel() == 1 else per_channel
    return grad_input, total.reshape(weight.shape).to(weight.dtype)


def aot_specs():
    """(name, kernel, signature, constexprs) for every specialization the launchers use, for the
    ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    for dtype, ptr, acc, compute in AOT_DTYPES:
        big_sig = aot_signature(_to_big_kernel, ptr, acc)
        small_sig = aot_signature(_to_small_kernel, ptr, acc, {"partial_ptr": "*acc"})
        for channels_last in (False, True):
            block_c, block_s = (64, 32) if channels_last else (2, 1024)
            layout = "nhwc" if channels_last else "nchw"
            for has_prelu in (False, True):
                consts = {
                    "HAS_PRELU": has_prelu,
                    "CHANNELS_LAST": channels_last,
                    "BLOCK_C": block_c,
                    "BLOCK_S": block_s,
                    "COMPUTE": compute,
                }
                specs.append(
                    (f"pixel_shuffle_to_big[{dtype},{layout},prelu={has_prelu}]", _to_big_kernel, big_sig, consts)
                )
            for has_prelu, want_dx, want_dw in (
                (False, True, False),
                (True, True, True),
                (True, False, True),
                (True, True, False),
            ):
                consts = {
                    "HAS_PRELU": has_prelu,
                    "WANT_DX": want_dx,
                    "WANT_DW": want_dw,
                    "CHANNELS_LAST": channels_last,
                    "BLOCK_C": block_c,
                    "BLOCK_S": block_s,
                    "COMPUTE": compute,
                }
                specs.append(
                    (
                        f"pixel_shuffle_to_small[{dtype},{layout},prelu={has_prelu},dx={want_dx},dw={want_dw}]",
                        _to_small_kernel,
                        small_sig,
                        consts,
                    )
                )
    return specs
