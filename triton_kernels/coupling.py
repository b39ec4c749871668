"""Triton kernels for the RealNVP affine coupling (the CUDA side of csrc/coupling.cpp).

Same math and the same layout rules (fastgen/ops/coupling.py mirrors the C++ ones): rows of x
are walked in x's row order, s and t are read in place when their rows are laid out in that
order, outputs are dense in it. Each program handles BLOCK consecutive elements of a row of x
and works out, per element, whether it is transformed and where its s and t are (no mask
tensor). Log-det and grad_scale partials are reduced on the host in a fixed order.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastgen.triton_kernels._common import AOT_DTYPES, aot_signature, launch, tl_dtype


@triton.jit
def _tanh(x):
    # No libdevice under the interpreter: tanh(x) = 2 sigmoid(2x) - 1.
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _positions(k, block, half, tr_begin, n1, n2, sp0, sp1, sp2, parity, CHECKER: tl.constexpr):
    """For element k of a row of x: is it transformed, and its offset in a row of s."""
    if CHECKER:
        # The row is n0 x n1 x n2 in row order; sp* say which of those dims are H or W.
        a2 = k % n2
        rest = k // n2
        a1 = rest % n1
        a0 = rest // n1
        coord = a0 * sp0 + a1 * sp1 + a2 * sp2
        transformed = (coord % 2) != parity
        s_off = k
    else:
        # The row is blocks of C * inner elements; the transformed half starts at tr_begin.
        o = k // block
        r = k - o * block
        transformed = (r >= tr_begin) & (r < tr_begin + half)
        s_off = o * half + r - tr_begin
    return transformed, s_off


@triton.jit
def _coupling_fwd_kernel(
    x_ptr,
    s_ptr,
    t_ptr,
    scale_ptr,
    y_ptr,
    part_ptr,
    cols,
    x_rs,
    s_rs,
    t_rs,
    scale_rs,
    n_blocks,
    block,
    half,
    tr_begin,
    n1,
    n2,
    sp0,
    sp1,
    sp2,
    parity,
    CHECKER: tl.constexpr,
    INVERSE: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    blk = tl.program_id(1)
    k = blk * BLOCK + tl.arange(0, BLOCK)
    inside = k < cols
    transformed, s_off = _positions(k, block, half, tr_begin, n1, n2, sp0, sp1, sp2, parity, CHECKER)
    on = inside & transformed
    x = tl.load(x_ptr + row * x_rs + k, mask=inside, other=0.0).to(COMPUTE)
    s = tl.load(s_ptr + row * s_rs + s_off, mask=on, other=0.0).to(COMPUTE)
    t = tl.load(t_ptr + row * t_rs + s_off, mask=on, other=0.0).to(COMPUTE)
    if HAS_SCALE:
        sc = tl.load(scale_ptr + row * scale_rs + s_off, mask=on, other=0.0).to(COMPUTE)
        s = sc * _tanh(s)
    s = tl.where(on, s, 0.0)
    t = tl.where(on, t, 0.0)
    if INVERSE:
        y = (x - t) * tl.exp(-s)
    else:
        y = x * tl.exp(s) + t
    tl.store(y_ptr + row * cols + k, y.to(y_ptr.dtype.element_ty), mask=inside)
    total = tl.sum(s, axis=0)
    if INVERSE:
        total = -total
    tl.store(part_ptr + row * n_blocks + blk, total)


@triton.jit
def _coupling_bwd_kernel(
    g_ptr,
    gl_ptr,
    x_ptr,
    s_ptr,
    scale_ptr,
    gi_ptr,
    gs_ptr,
    gt_ptr,
    gscale_ptr,
    rows,
    cols,
    s_cols,
    g_rs,
    x_rs,
    s_rs,
    scale_rs,
    block,
    half,
    tr_begin,
    n1,
    n2,
    sp0,
    sp1,
    sp2,
    parity,
    CHECKER: tl.constexpr,
    INVERSE: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_G: tl.constexpr,
    HAS_GL: tl.constexpr,
    WANT_GI: tl.constexpr,
    WANT_GS: tl.constexpr,
    WANT_GT: tl.constexpr,
    WANT_GSCALE: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
    COMPUTE: tl.constexpr,
):
    # One program: BLOCK elements of ROWS consecutive rows; the grad_scale terms of those rows
    # are summed in registers and written as one partial row (reduced on the host).
    group = tl.program_id(0)
    blk = tl.program_id(1)
    k = blk * BLOCK + tl.arange(0, BLOCK)
    inside = k < cols
    transformed, s_off = _positions(k, block, half, tr_begin, n1, n2, sp0, sp1, sp2, parity, CHECKER)
    acc = tl.zeros([BLOCK], COMPUTE)
    for r in range(ROWS):
        row = (group * ROWS + r).to(tl.int64)
        live = (tl.zeros([BLOCK], tl.int64) + row) < rows
        m_in = inside & live
        m_on = m_in & transformed
        s = tl.load(s_ptr + row * s_rs + s_off, mask=m_on, other=0.0).to(COMPUTE)
        if HAS_SCALE:
            sc = tl.load(scale_ptr + row * scale_rs + s_off, mask=m_on, other=0.0).to(COMPUTE)
            th = tl.where(m_on, _tanh(s), 0.0)
            se = sc * th
        else:
            se = tl.where(m_on, s, 0.0)
        if HAS_GL:
            gl = tl.load(gl_ptr + row + tl.zeros([BLOCK], tl.int64), mask=live, other=0.0).to(COMPUTE)
        else:
            gl = 0.0
        if HAS_G:
            g = tl.load(g_ptr + row * g_rs + k, mask=m_in, other=0.0).to(COMPUTE)
            x = tl.load(x_ptr + row * x_rs + k, mask=m_on, other=0.0).to(COMPUTE)
            if INVERSE:
                gi = g * tl.exp(-se)
                gt = -gi
                dse = -(g * x + gl)
            else:
                e = tl.exp(se)
                gi = g * e
                gt = g
                dse = g * x * e + gl
        else:
            gi = tl.zeros([BLOCK], COMPUTE)
            gt = tl.zeros([BLOCK], COMPUTE)
            if INVERSE:
                dse = tl.zeros([BLOCK], COMPUTE) - gl
            else:
                dse = tl.zeros([BLOCK], COMPUTE) + gl
        dse = tl.where(m_on, dse, 0.0)
        gt = tl.where(m_on, gt, 0.0)
        if HAS_SCALE:
            gs = dse * sc * (1.0 - th * th)
            acc += dse * th
        else:
            gs = dse
        if WANT_GI:
            tl.store(gi_ptr + row * cols + k, gi.to(gi_ptr.dtype.element_ty), mask=m_in)
        # With the checkerboard s and t have an entry for every element: the conditioning ones
        # get zeros.
        m_st = m_in if CHECKER else m_on
        if WANT_GS:
            tl.store(gs_ptr + row * s_cols + s_off, gs.to(gs_ptr.dtype.element_ty), mask=m_st)
        if WANT_GT:
            tl.store(gt_ptr + row * s_cols + s_off, gt.to(gt_ptr.dtype.element_ty), mask=m_st)
    if WANT_GSCALE:
        tl.store(gscale_ptr + group.to(tl.int64) * s_cols + s_off, acc, mask=inside & transformed)


def _plan(x: torch.Tensor, order, mask: str, parity: int) -> dict:
    """The row walk of csrc/coupling.cpp (make_plan) as kernel arguments."""
    plan = dict(block=1, half=0, tr_begin=0, n1=1, n2=1, sp0=0, sp1=0, sp2=0, parity=parity)
    if mask == "channel":
        inner = 1
        for d in order[order.index(1) + 1 :]:
            inner *= x.shape[d]
        plan["block"] = x.shape[1] * inner
        plan["half"] = plan["block"] // 2
        plan["tr_begin"] = plan["half"] if parity == 0 else 0
    else:
        plan.update(
            n1=x.shape[order[1]],
            n2=x.shape[order[2]],
            sp0=int(order[0] != 1),
            sp1=int(order[1] != 1),
            sp2=int(order[2] != 1),
        )
    return plan


def _scale_rows(scale, s, s_strides, acc):
    """The scale broadcast to one row of s (to every row when it varies along the batch), in s's
    row layout and the accumulation dtype; and whether it is per row."""
    per_row = scale.dim() == s.dim() and scale.shape[0] != 1
    sizes = list(s.shape)
    if not per_row:
        sizes[0] = 1
    buf = torch.empty_strided(sizes, s_strides, dtype=acc, device=s.device)
    return buf.copy_(scale.expand(sizes)), per_row


def _block(cols: int) -> int:
    return max(16, min(1024, triton.next_power_of_2(cols)))


def affine_coupling(x_, s_, t_, scale, mask, mask_parity, inverse, order, x_strides, s_strides, acc):
    """x_, s_, t_ checked and with rows laid out as x_strides / s_strides say (fastgen.ops.coupling:
    layout, with_rows); `order` the row order of x; acc the accumulation dtype."""
    x = x_
    rows = x.shape[0]
    cols = x.numel() // rows if rows else 0
    y = torch.empty_strided(x.shape, x_strides, dtype=x.dtype, device=x.device)
    if rows == 0 or cols == 0:
        return y, torch.zeros(rows, dtype=acc, device=x.device)
    has_scale = scale is not None
    scale_buf, per_row = _scale_rows(scale, s_, s_strides, acc) if has_scale else (x_, False)
    block = _block(cols)
    n_blocks = triton.cdiv(cols, block)
    partials = torch.empty((rows, n_blocks), dtype=acc, device=x.device)
    launch(_coupling_fwd_kernel)[(rows, n_blocks)](
        x_,
        s_,
        t_,
        scale_buf,
        y,
        partials,
        cols,
        x_.stride(0),
        s_.stride(0),
        t_.stride(0),
        (s_.numel() // rows) if per_row else 0,
        n_blocks,
        **_plan(x_, order, mask, mask_parity),
        CHECKER=mask == "checkerboard",
        INVERSE=bool(inverse),
        HAS_SCALE=has_scale,
        BLOCK=block,
        COMPUTE=tl_dtype(acc),
    )
    return y, partials.sum(1)


def affine_coupling_backward(
    g_, grad_logdet, x_, s_, scale, mask, mask_parity, inverse, output_mask, order, x_strides, s_strides, acc
):
    """As affine_coupling; g_ (grad_output, or None) laid out as x_."""
    x, s = x_, s_
    want_input, want_s, want_t, want_scale = output_mask
    rows = x.shape[0]
    cols = x.numel() // rows if rows else 0
    s_cols = s.numel() // rows if rows else 0
    gl = grad_logdet.to(acc).contiguous() if grad_logdet is not None else None
    none = lambda: x.new_empty((0,))  # noqa: E731  (outputs not asked for)
    grad_input = torch.empty_strided(x.shape, x_strides, dtype=x.dtype, device=x.device) if want_input else none()
    grad_s = torch.empty_strided(s.shape, s_strides, dtype=s.dtype, device=s.device) if want_s else none()
    grad_t = torch.empty_strided(s.shape, s_strides, dtype=s.dtype, device=s.device) if want_t else none()
    has_scale = scale is not None
    want_scale = has_scale and want_scale
    per_row = False
    if has_scale:
        scale_buf, per_row = _scale_rows(scale, s_, s_strides, acc)
    rows_per_program = 1 if per_row else 16
    groups = triton.cdiv(rows, rows_per_program) if rows else 0
    gscale = torch.zeros((groups if want_scale else 1, s_cols), dtype=acc, device=x.device)
    if rows and cols:
        block = _block(cols)
        launch(_coupling_bwd_kernel)[(groups, triton.cdiv(cols, block))](
            g_ if g_ is not None else x_,
            gl if gl is not None else gscale,
            x_,
            s_,
            scale_buf if has_scale else x_,
            grad_input if want_input else x_,
            grad_s if want_s else x_,
            grad_t if want_t else x_,
            gscale,
            rows,
            cols,
            s_cols,
            g_.stride(0) if g_ is not None else 0,
            x_.stride(0),
            s_.stride(0),
            s_cols if per_row else 0,
            **_plan(x_, order, mask, mask_parity),
            CHECKER=mask == "checkerboard",
            INVERSE=bool(inverse),
            HAS_SCALE=has_scale,
            HAS_G=g_ is not None,
            HAS_GL=gl is not None,
            WANT_GI=bool(want_input),
            WANT_GS=bool(want_s),
            WANT_GT=bool(want_t),
            WANT_GSCALE=want_scale,
            ROWS=rows_per_program,
            BLOCK=block,
            COMPUTE=tl_dtype(acc),
        )
    if not want_scale:
        return grad_input, grad_s, grad_t, none()
    sizes = list(s.shape)
    if not per_row:
        gscale = gscale.sum(0, keepdim=True)
        sizes[0] = 1
    full = gscale.as_strided(sizes, s_strides)
    grad_scale = torch.empty(scale.shape, dtype=scale.dtype, device=scale.device)
    grad_scale.copy_(full.double().sum_to_size(scale.shape))
    return grad_input, grad_s, grad_t, grad_scale


def aot_specs():
    """(name, kernel, signature, constexprs) for the specializations the launchers use most,
    for the ahead-of-time compile (fastgen.triton_kernels.aot)."""
    specs = []
    for dtype, ptr, acc, compute in AOT_DTYPES:
        fwd_sig = aot_signature(_coupling_fwd_kernel, ptr, acc, {"scale_ptr": "*acc", "part_ptr": "*acc"})
        bwd_sig = aot_signature(
            _coupling_bwd_kernel, ptr, acc, {"gl_ptr": "*acc", "scale_ptr": "*acc", "gscale_ptr": "*acc"}
        )
        for checker, inverse, has_scale in ((False, False, True), (True, True, False)):
            consts = {"CHECKER": checker, "INVERSE": inverse, "HAS_SCALE": has_scale, "BLOCK": 1024, "COMPUTE": compute}
            name = (
                f"coupling_fwd[{dtype},{'checkerboard' if checker else 'channel'},inverse={inverse},scale={has_scale}]"
            )
            specs.append((name, _coupling_fwd_kernel, fwd_sig, consts))
            consts = {
                "CHECKER": checker,
                "INVERSE": not inverse,
                "HAS_SCALE": has_scale,
                "HAS_G": True,
                "HAS_GL": True,
                "WANT_GI": True,
                "WANT_GS": True,
                "WANT_GT": not checker,
                "WANT_GSCALE": has_scale,
                "ROWS": 16,
                "BLOCK": 1024,
                "COMPUTE": compute,
            }
            mask = "checkerboard" if checker else "channel"
            name = f"coupling_bwd[{dtype},{mask},inverse={not inverse},scale={has_scale}]"
            specs.append((name, _coupling_bwd_kernel, bwd_sig, consts))
    return specs
