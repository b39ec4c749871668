"""RealNVP affine coupling: fake impls and the CUDA (Triton)
kernels for fastgen::affine_coupling and fastgen::affine_coupling_backward.

The math lives in csrc/coupling.cpp, the autograd (double backward included) in
csrc/autograd/coupling.cpp. The layout rules below mirror it exactly (the fake impls
and the Triton launchers return outputs with the C++ kernels' strides): a row (dim 0) of x is
walked in x's own memory order when each row is dense ("row order"), s and t are read in place
when their rows are laid out in that same order (any batch stride), and every output is dense
in that order.
"""

from __future__ import annotations

import torch

from fastgen._checks import acc_dtype, check_same_device
from fastgen.ops._triton import register_cuda

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


# ---------------------------------------------------------------------------------------
# checks (the ones csrc/coupling.cpp makes, for the fake impls and the Triton launchers)


def _check_same(op, name, t, x):
    torch._check(
        t.dtype == x.dtype, lambda: f"fastgen.{op}: {name} must have the dtype of x ({x.dtype}), got {t.dtype}"
    )
    torch._check(
        t.device == x.device, lambda: f"fastgen.{op}: {name} must be on the device of x ({x.device}), got {t.device}"
    )


def check_args(op, x, s, t, scale, mask, mask_parity) -> None:
    torch._check(mask in MASKS, lambda: f"fastgen.{op}: mask must be 'channel' or 'checkerboard', got '{mask}'")
    torch._check(x.dtype.is_floating_point, lambda: f"fastgen.{op}: x must be a floating-point tensor, got {x.dtype}")
    if mask == "channel":
        torch._check(
            x.dim() >= 2,
            lambda: f"fastgen.{op}: x must be (B, C, ...) or (B, D) for mask='channel', got shape {tuple(x.shape)}",
        )
        torch._check(
            x.shape[1] % 2 == 0,
            lambda: (
                f"fastgen.{op}: x must have an even number of channels (dim 1) for mask='channel', got {x.shape[1]}"
            ),
        )
    else:
        torch._check(
            x.dim() == 4,
            lambda: f"fastgen.{op}: x must be 4-D (B, C, H, W) for mask='checkerboard', got shape {tuple(x.shape)}",
        )
    torch._check(mask_parity in (0, 1), lambda: f"fastgen.{op}: mask_parity must be 0 or 1, got {mask_parity}")
    want = s_shape(x, mask)
    what = "one half of x" if mask == "channel" else "the shape of x"
    for name, u in (("s", s), ("t", t)):
        if u is None:
            continue
        torch._check(
            tuple(u.shape) == want,
            lambda: f"fastgen.{op}: {name} must have shape {want} ({what}), got {tuple(u.shape)}",
        )
        _check_same(op, name, u, x)
    if scale is not None:
        _check_same(op, "scale", scale, x)
        ok = scale.dim() <= s.dim() and all(
            bool(scale.shape[-i] == 1) or bool(scale.shape[-i] == s.shape[-i]) for i in range(1, scale.dim() + 1)
        )
        torch._check(
            ok,
            lambda: (
                f"fastgen.{op}: scale must broadcast to the shape of s {tuple(s.shape)}, got shape {tuple(scale.shape)}"
            ),
        )


def check_backward_args(grad_output, grad_logdet, x, s, scale, mask, mask_parity) -> None:
    op = "affine_coupling_backward"
    check_args(op, x, s, None, scale, mask, mask_parity)
    if grad_output is not None:
        torch._check(
            grad_output.shape == x.shape,
            lambda: (
                f"fastgen.{op}: grad_output must have the shape of x {tuple(x.shape)}, got {tuple(grad_output.shape)}"
            ),
        )
        _check_same(op, "grad_output", grad_output, x)
    if grad_logdet is not None:
        torch._check(
            grad_logdet.dim() == 1 and grad_logdet.shape[0] == x.shape[0],
            lambda: f"fastgen.{op}: grad_logdet must have shape ({x.shape[0]},), got {tuple(grad_logdet.shape)}",
        )
        torch._check(
            grad_logdet.dtype.is_floating_point,
            lambda: f"fastgen.{op}: grad_logdet must be a floating-point tensor, got {grad_logdet.dtype}",
        )


# ---------------------------------------------------------------------------------------
# fake impls


@torch.library.register_fake("fastgen::affine_coupling")
def _affine_coupling_fake(x, s, t, scale, mask, mask_parity, inverse):
    check_args("affine_coupling", x, s, t, scale, mask, mask_parity)
    check_same_device("affine_coupling", "x", x, s=s, t=t, scale=scale)
    _, x_strides, _ = layout(x, mask)
    y = x.new_empty_strided(x.shape, x_strides)
    return y, x.new_empty((x.shape[0],), dtype=acc_dtype(x.dtype))


@torch.library.register_fake("fastgen::affine_coupling_backward")
def _affine_coupling_backward_fake(grad_output, grad_logdet, x, s, scale, mask, mask_parity, inverse, output_mask):
    check_backward_args(grad_output, grad_logdet, x, s, scale, mask, mask_parity)
    check_same_device(
        "affine_coupling_backward", "x", x, grad_output=grad_output, grad_logdet=grad_logdet, s=s, scale=scale
    )
    _, x_strides, s_strides = layout(x, mask)
    want_input, want_s, want_t, want_scale = output_mask
    none = lambda: x.new_empty((0,))  # noqa: E731
    return (
        x.new_empty_strided(x.shape, x_strides) if want_input else none(),
        s.new_empty_strided(s.shape, s_strides) if want_s else none(),
        s.new_empty_strided(s.shape, s_strides) if want_t else none(),
        scale.new_empty(scale.shape) if (scale is not None and want_scale) else none(),
    )


# ---------------------------------------------------------------------------------------
# CUDA: the checks and layouts above, then the Triton launchers (fastgen.triton_kernels.coupling)


def _affine_coupling_cuda(kernels, x, s, t, scale, mask, mask_parity, inverse):
    check_args("affine_coupling", x, s, t, scale, mask, mask_parity)
    order, x_strides, s_strides = layout(x, mask)
    return kernels.affine_coupling(
        with_rows(x, x_strides),
        with_rows(s, s_strides),
        with_rows(t, s_strides),
        scale,
        mask,
        mask_parity,
        inverse,
        order,
        x_strides,
        s_strides,
        acc_dtype(x.dtype),
    )


def _affine_coupling_backward_cuda(
    kernels, grad_output, grad_logdet, x, s, scale, mask, mask_parity, inverse, output_mask
):
    check_backward_args(grad_output, grad_logdet, x, s, scale, mask, mask_parity)
    order, x_strides, s_strides = layout(x, mask)
    g_ = with_rows(grad_output, x_strides) if grad_output is not None else None
    return kernels.affine_coupling_backward(
        g_,
        grad_logdet,
        with_rows(x, x_strides),
        with_rows(s, s_strides),
        scale,
        mask,
        mask_parity,
        inverse,
        output_mask,
        order,
        x_strides,
        s_strides,
        acc_dtype(x.dtype),
    )


register_cuda(
    "coupling",
    {"affine_coupling": _affine_coupling_cuda, "affine_coupling_backward": _affine_coupling_backward_cuda},
    untraced={"affine_coupling", "affine_coupling_backward"},
)
