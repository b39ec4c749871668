"""RealNVP affine coupling: fake impls, autograd (double backward included) and the CUDA
(Triton) kernels for fastgen::affine_coupling and fastgen::affine_coupling_backward.

The math lives in csrc/coupling.cpp. The layout rules below mirror it exactly (the fake impls
and the Triton launchers return outputs with the C++ kernels' strides): a row (dim 0) of x is
walked in x's own memory order when each row is dense ("row order"), s and t are read in place
when their rows are laid out in that same order (any batch stride), and every output is dense
in that order.
"""
from __future__ import annotations

import torch

from fastgen._checks import check_same_device
from fastgen._autograd import register_autograd

_ops = torch.ops.fastgen
MASKS = ("channel", "checkerboard")


# ---------------------------------------------------------------------------------------
# layouts (csrc/coupling.cpp: row_order, row_strides, with_rows)


def row_order(t: torch.Tensor) -> list[int]:
    """Dims 1..n-1 of t, outermost first in memory (ties keep dim order), when each row t[b]
    is one dense block; otherwise the natural order."""
    dims = list(range(1, t.dim()))
    order = sorted(dims, key=lambda d: -t.stride(d))
    expected = 1
    for d in reversed(order):
        if bool(t.shape[d] == 1):
            continue
        if bool(t.stride(d) != expected):
            return dims
        expected = expected * t.shape[d]
    return order


def row_strides(sizes, order) -> list:
    strides = [0] * len(sizes)
    step = 1
    for d in reversed(order):
        strides[d] = step
        step = step * sizes[d]
    strides[0] = step
    return strides


def with_rows(t: torch.Tensor, strides) -> torch.Tensor:
    """t when every row is laid out as `strides` says (any batch stride), else such a copy."""
    if t.numel() == 0 or all(bool(t.shape[d] == 1) or bool(t.stride(d) == strides[d]) for d in range(1, t.dim())):
        return t
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)


def s_shape(x: torch.Tensor, mask: str) -> tuple:
    shape = list(x.shape)
    if mask == "channel":
        shape[1] = shape[1] // 2
    return tuple(shape)


def layout(x: torch.Tensor, mask: str):
    """(row order of x, strides of x-shaped outputs, strides of s-shaped outputs)."""
    order = row_order(x)
    return order, row_strides(x.shape, order), row_strides(s_shape(x, mask), order)


def logdet_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------
# checks (the ones csrc/coupling.cpp makes, for the fake impls and the Triton launchers)


def _check_same(op, name, t, x):
    torch._check(t.dtype == x.dtype, lambda: f"fastgen.{op}: {name} must have the dtype of x ({x.dtype}), got {t.dtype}")
    torch._check(t.device == x.device, lambda: f"fastgen.{op}: {name} must be on the device of x ({x.device}), got {t.device}")


def check_args(op, x, s, t, scale, mask, mask_parity) -> None:
    torch._check(mask in MASKS, lambda: f"fastgen.{op}: mask must be 'channel' or 'checkerboard', got '{mask}'")
    torch._check(x.dtype.is_floating_point, lambda: f"fastgen.{op}: x must be a floating-point tensor, got {x.dtype}")
    if mask == "channel":
        torch._check(x.dim() >= 2, lambda: f"fastgen.{op}: x must be (B, C, ...) or (B, D) for mask='channel', got shape {tuple(x.shape)}")
        torch._check(x.shape[1] % 2 == 0, lambda: f"fastgen.{op}: x must have an even number of channels (dim 1) for mask='channel', got {x.shape[1]}")
    else:
        torch._check(x.dim() == 4, lambda: f"fastgen.{op}: x must be 4-D (B, C, H, W) for mask='checkerboard', got shape {tuple(x.shape)}")
    torch._check(mask_parity in (0, 1), lambda: f"fastgen.{op}: mask_parity must be 0 or 1, got {mask_parity}")
    want = s_shape(x, mask)
    what = "one half of x" if mask == "channel" else "the shape of x"
    for name, u in (("s", s), ("t", t)):
        if u is None:
            continue
        torch._check(tuple(u.shape) == want, lambda: f"fastgen.{op}: {name} must have shape {want} ({what}), got {tuple(u.shape)}")
        _check_same(op, name, u, x)
    if scale is not None:
        _check_same(op, "scale", scale, x)
        ok = scale.dim() <= s.dim() and all(
            bool(scale.shape[-i] == 1) or bool(scale.shape[-i] == s.shape[-i]) for i in range(1, scale.dim() + 1))
        torch._check(ok, lambda: f"fastgen.{op}: scale must broadcast to the shape of s {tuple(s.shape)}, got shape {tuple(scale.shape)}")


def check_backward_args(grad_output, grad_logdet, x, s, scale, mask, mask_parity) -> None:
    op = "affine_coupling_backward"
    check_args(op, x, s, None, scale, mask, mask_parity)
    if grad_output is not None:
        torch._check(grad_output.shape == x.shape, lambda: f"fastgen.{op}: grad_output must have the shape of x {tuple(x.shape)}, got {tuple(grad_output.shape)}")
        _check_same(op, "grad_output", grad_output, x)
    if grad_logdet is not None:
        torch._check(grad_logdet.dim() == 1 and grad_logdet.shape[0] == x.shape[0],
                     lambda: f"fastgen.{op}: grad_logdet must have shape ({x.shape[0]},), got {tuple(grad_logdet.shape)}")
        torch._check(grad_logdet.dtype.is_floating_point, lambda: f"fastgen.{op}: grad_logdet must be a floating-point tensor, got {grad_logdet.dtype}")


# ---------------------------------------------------------------------------------------
# fake impls


@torch.library.register_fake("fastgen::affine_coupling")
def _affine_coupling_fake(x, s, t, scale, mask, mask_parity, inverse):
    check_args("affine_coupling", x, s, t, scale, mask, mask_parity)
    check_same_device("affine_coupling", "x", x, s=s, t=t, scale=scale)
    _, x_strides, _ = layout(x, mask)
    y = x.new_empty_strided(x.shape, x_strides)
    return y, x.new_empty((x.shape[0],), dtype=logdet_dtype(x.dtype))


@torch.library.register_fake("fastgen::affine_coupling_backward")
def _affine_coupling_backward_fake(grad_output, grad_logdet, x, s, scale, mask, mask_parity, inverse, output_mask):
    check_backward_args(grad_output, grad_logdet, x, s, scale, mask, mask_parity)
    check_same_device("affine_coupling_backward", "x", x, grad_output=grad_output, grad_logdet=grad_logdet, s=s,
                      scale=scale)
    _, x_strides, s_strides = layout(x, mask)
    want_input, want_s, want_t, want_scale = output_mask
    none = lambda: x.new_empty((0,))  # noqa: E731
    return (x.new_empty_strided(x.shape, x_strides) if want_input else none(),
            s.new_empty_strided(s.shape, s_strides) if want_s else none(),
            s.new_empty_strided(s.shape, s_strides) if want_t else none(),
            scale.new_empty(scale.shape) if (scale is not None and want_scale) else none())


# ---------------------------------------------------------------------------------------
# autograd


def _setup(ctx, inputs, output):
    x, s, t, scale, mask, mask_parity, inverse = inputs
    ctx.mask, ctx.mask_parity, ctx.inverse = mask, mask_parity, inverse
    ctx.has_scale = scale is not None
    # The untransformed side: the input going forward, the output going back (so the inverse's
    # backward needs neither t nor a recomputation).
    x_side = output[0] if inverse else x
    ctx.save_for_backward(x_side, s, scale)


def _backward(ctx, grad_y, grad_logdet):
    x_side, s, scale = ctx.saved_tensors
    need_x, need_s, need_t = ctx.needs_input_grad[:3]
    need_scale = ctx.has_scale and ctx.needs_input_grad[3]
    # Going forward with the channel mask, grad_t is grad_y's transformed half exactly: hand
    # out that view (as eager's cat backward does) instead of writing a copy.
    t_is_view = need_t and ctx.mask == "channel" and not ctx.inverse
    grad_in, grad_s, grad_t, grad_scale = _ops.affine_coupling_backward(
        grad_y, grad_logdet, x_side, s, scale, ctx.mask, ctx.mask_parity, ctx.inverse,
        [need_x, need_s, need_t and not t_is_view, need_scale])
    if t_is_view:
        half = s.shape[1]
        grad_t = grad_y.narrow(1, half if ctx.mask_parity == 0 else 0, half) if grad_y is not None else None
    return (grad_in if need_x else None, grad_s if need_s else None, grad_t if need_t else None,
            grad_scale if need_scale else None, None, None, None)


def _setup_backward(ctx, inputs, output):
    grad_output, grad_logdet, x, s, scale, mask, mask_parity, inverse, output_mask = inputs
    ctx.mask, ctx.mask_parity, ctx.inverse = mask, mask_parity, inverse
    ctx.output_mask = list(output_mask)
    ctx.save_for_backward(grad_output, grad_logdet, x, s, scale)


class _Parts:
    """The transformed part of x-shaped tensors and the way back, in torch ops (double backward
    only: the kernels never build a mask)."""

    def __init__(self, x: torch.Tensor, mask: str, parity: int):
        self.parity = parity
        self.on = None
        if mask == "channel":
            self.half = x.shape[1] // 2
            self.start = self.half if parity == 0 else 0
        else:
            h = torch.arange(x.shape[2], device=x.device).view(-1, 1)
            w = torch.arange(x.shape[3], device=x.device).view(1, -1)
            self.on = ((h + w) % 2 != parity).view(1, 1, x.shape[2], x.shape[3])

    def tr(self, z):
        """x-shaped -> s-shaped: the transformed part."""
        return z.narrow(1, self.start, self.half) if self.on is None else z

    def only(self, z):
        """s-shaped, zeroed on the checkerboard's ignored entries."""
        return z if self.on is None else torch.where(self.on, z, torch.zeros((), dtype=z.dtype, device=z.device))

    def join(self, cond, tr):
        """x-shaped from an x-shaped tensor holding the conditioning part (None: zeros) and the
        transformed part."""
        if self.on is None:
            cond = torch.zeros_like(tr) if cond is None else cond.narrow(1, self.half - self.start, self.half)
            return torch.cat([cond, tr] if self.parity == 0 else [tr, cond], dim=1)
        return self.only(tr) if cond is None else torch.where(self.on, tr, cond)


def _backward_backward(ctx, gg_in, gg_s, gg_t, gg_scale):
    """Vector-Jacobian product of affine_coupling_backward, in differentiable torch ops.

    On the transformed part, with s_eff = scale * tanh(s) (or s), e = exp(+-s_eff), gl the row's
    logdet gradient and X the untransformed side (see the schema):
      forward:  grad_in = g e,  grad_t = g,      dse = g X e + gl
      inverse:  grad_in = g e,  grad_t = -g e,   dse = -(g X + gl)
      grad_s = dse * scale * (1 - tanh(s)^2),   grad_scale = sum(dse * tanh(s))
    (grad_s = dse without scale), and grad_in = g on the conditioning part.
    """
    g, gl, X, s, scale = ctx.saved_tensors
    # Outputs that were not computed (empty) carry no gradient.
    gg_in, gg_s, gg_t, gg_scale = (gg if want else None for gg, want in zip((gg_in, gg_s, gg_t, gg_scale), ctx.output_mask))
    if scale is None:
        gg_scale = None
    inverse = ctx.inverse
    parts = _Parts(X, ctx.mask, ctx.mask_parity)
    zeros = torch.zeros_like(s)
    a = parts.tr(gg_in) if gg_in is not None else zeros
    b = gg_s if gg_s is not None else zeros
    c = parts.only(gg_t) if gg_t is not None else zeros
    g_tr = parts.tr(g) if g is not None else zeros
    x_tr = parts.tr(X)
    gl_rows = gl.to(s.dtype).view((-1,) + (1,) * (s.dim() - 1)) if gl is not None else zeros
    if scale is not None:
        th = parts.only(torch.tanh(s))
        s_eff = scale * th
        ds_eff = scale * (1 - th * th)  # d s_eff / d s
        u = b * ds_eff + (gg_scale * th if gg_scale is not None else 0)
    else:
        s_eff = parts.only(s)
        u = b
    u = parts.only(u)  # what reaches dse from grad_s and grad_scale
    e = torch.exp(-s_eff if inverse else s_eff)
    if not inverse:
        d_g_tr = a * e + c + u * x_tr * e
        d_x_tr = u * g_tr * e
        d_se = g_tr * e * (a + u * x_tr)  # d loss / d s_eff through e
        dse = g_tr * x_tr * e + gl_rows
        d_gl = u.flatten(1).sum(1)
    else:
        d_g_tr = (a - c) * e - u * x_tr
        d_x_tr = -u * g_tr
        d_se = -(a - c) * g_tr * e
        dse = -(g_tr * x_tr + gl_rows)
        d_gl = -u.flatten(1).sum(1)
    d_se = parts.only(d_se)
    d_scale = None
    if scale is not None:
        dse = parts.only(dse)
        one_m_th2 = 1 - th * th
        direct = (gg_scale if gg_scale is not None else 0) - 2 * b * scale * th
        d_s = d_se * ds_eff + dse * one_m_th2 * direct
        d_scale = parts.only(d_se * th + b * dse * one_m_th2).sum_to_size(scale.shape)
    else:
        d_s = d_se
    d_g = parts.join(gg_in, parts.only(d_g_tr)) if g is not None else None
    d_x = parts.join(None, parts.only(d_x_tr)) if g is not None else None
    d_gl = d_gl.to(gl.dtype) if gl is not None else None
    return d_g, d_gl, d_x, parts.only(d_s), d_scale, None, None, None, None


register_autograd("fastgen::affine_coupling", _backward, setup_context=_setup)
register_autograd("fastgen::affine_coupling_backward", _backward_backward, setup_context=_setup_backward)


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


@torch.library.register_kernel("fastgen::affine_coupling", "cuda")
def _affine_coupling_cuda(x, s, t, scale, mask, mask_parity, inverse):
    from fastgen.triton_kernels import coupling as kernels

    return kernels.affine_coupling(x, s, t, scale, mask, mask_parity, inverse)


@torch.library.register_kernel("fastgen::affine_coupling_backward", "cuda")
def _affine_coupling_backward_cuda(grad_output, grad_logdet, x, s, scale, mask, mask_parity, inverse, output_mask):
    from fastgen.triton_kernels import coupling as kernels

    return kernels.affine_coupling_backward(grad_output, grad_logdet, x, s, scale, mask, mask_parity, inverse,
                                            output_mask)
