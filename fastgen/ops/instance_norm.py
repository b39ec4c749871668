"""Fused instance norm (+activation, +residual): fake impls, autograd (double backward
included) and the CUDA (Triton) kernels for fastgen::instance_norm and
fastgen::instance_norm_backward.

The math lives in csrc/instance_norm.cpp; the backward of the backward op is written below
in torch ops, so that create_graph=True gradients (WGAN-GP critics) flow through it.
"""
from __future__ import annotations

import torch

from fastgen._autograd import register_autograd

from fastgen._layout import channel_major_or_innermost

_ops = torch.ops.fastgen
ACTIVATIONS = ("none", "relu", "leaky_relu")


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype statistics are computed and returned in: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _spatial(x) -> int:
    m = 1
    for s in x.shape[2:]:
        m = m * s
    return m


def _check_input(op: str, x) -> None:
    torch._check(x.dtype.is_floating_point, lambda: f"fastgen.{op}: input must be a floating-point tensor, got {x.dtype}")
    torch._check(x.dim() >= 2, lambda: f"fastgen.{op}: input must have at least 2 dimensions (N, C, ...), got {x.dim()}-D input of shape {tuple(x.shape)}")


def _check_activation(op: str, activation: str) -> None:
    torch._check(activation in ACTIVATIONS, lambda: f"fastgen.{op}: activation must be 'none', 'relu' or 'leaky_relu', got '{activation}'")


def _check_channel_param(op: str, name: str, t, x) -> None:
    if t is None:
        return
    C = x.shape[1]
    torch._check(t.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {t.dtype}")
    torch._check(t.dim() == 1 and t.shape[0] == C, lambda: f"fastgen.{op}: {name} must have shape ({C},) (the input's channels), got {tuple(t.shape)}")
    torch._check(t.device == x.device, lambda: f"fastgen.{op}: {name} must be on the device of input ({x.device}), got {t.device}")


def _check_like_input(op: str, name: str, t, x) -> None:
    torch._check(t.shape == x.shape, lambda: f"fastgen.{op}: {name} must have the shape of input {tuple(x.shape)}, got {tuple(t.shape)}")
    torch._check(t.dtype == x.dtype, lambda: f"fastgen.{op}: {name} must have the dtype of input ({x.dtype}), got {t.dtype}")
    torch._check(t.device == x.device, lambda: f"fastgen.{op}: {name} must be on the device of input ({x.device}), got {t.device}")


def _check_stats(op: str, name: str, t, x) -> None:
    N, C = x.shape[0], x.shape[1]
    want = opmath_dtype(x.dtype)
    torch._check(t.dim() == 2 and t.shape[0] == N and t.shape[1] == C, lambda: f"fastgen.{op}: {name} must have shape ({N}, {C}), got {tuple(t.shape)}")
    torch._check(t.dtype == want, lambda: f"fastgen.{op}: {name} must be {want} for {x.dtype} input, got {t.dtype}")
    torch._check(t.device == x.device, lambda: f"fastgen.{op}: {name} must be on the device of input ({x.device}), got {t.device}")


def check_forward_args(x, weight, bias, running_mean, running_var, residual, use_input_stats, activation) -> None:
    """The checks csrc/instance_norm.cpp makes, for the fake impls and the Triton launchers."""
    op = "instance_norm"
    _check_input(op, x)
    _check_activation(op, activation)
    _check_channel_param(op, "weight", weight, x)
    _check_channel_param(op, "bias", bias, x)
    if use_input_stats:
        if _spatial(x) == 1:
            raise ValueError(f"fastgen.{op}: Expected more than 1 spatial element when training, got input size {list(x.shape)}")
    else:
        torch._check(running_mean is not None and running_var is not None,
                     lambda: f"fastgen.{op}: running_mean and running_var must be given when use_input_stats is False")
        _check_channel_param(op, "running_mean", running_mean, x)
        _check_channel_param(op, "running_var", running_var, x)
    if residual is not None:
        _check_like_input(op, "residual", residual, x)


def check_backward_args(grad_out, x, weight, bias, mean, var, activation, output_mask) -> None:
    op = "instance_norm_backward"
    _check_input(op, x)
    _check_activation(op, activation)
    _check_like_input(op, "grad_out", grad_out, x)
    _check_stats(op, "mean", mean, x)
    _check_stats(op, "var", var, x)
    _check_channel_param(op, "weight", weight, x)
    _check_channel_param(op, "bias", bias, x)
    torch._check(not output_mask[1] or weight is not None, lambda: f"fastgen.{op}: output_mask[1] (grad_weight) needs weight")
    torch._check(not output_mask[2] or bias is not None, lambda: f"fastgen.{op}: output_mask[2] (grad_bias) needs bias")


def backward_outputs_like(x, weight, bias, output_mask):
    """Empty outputs of instance_norm_backward with the strides and dtypes every backend returns."""
    layout = channel_major_or_innermost(x)
    grad_input = torch.empty_like(layout) if output_mask[0] else x.new_empty((0,))
    grad_weight = x.new_empty(weight.shape, dtype=weight.dtype) if output_mask[1] else x.new_empty((0,))
    grad_bias = x.new_empty(bias.shape, dtype=bias.dtype) if output_mask[2] else x.new_empty((0,))
    return grad_input, grad_weight, grad_bias


@torch.library.register_fake("fastgen::instance_norm")
def _instance_norm_fake(x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation,
                        negative_slope):
    check_forward_args(x, weight, bias, running_mean, running_var, residual, use_input_stats, activation)
    stats = x.new_empty((x.shape[0], x.shape[1]), dtype=opmath_dtype(x.dtype))
    return torch.empty_like(channel_major_or_innermost(x)), stats, torch.empty_like(stats)


@torch.library.register_fake("fastgen::instance_norm_backward")
def _instance_norm_backward_fake(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation,
                                 negative_slope, output_mask):
    check_backward_args(grad_out, x, weight, bias, mean, var, activation, output_mask)
    return backward_outputs_like(x, weight, bias, output_mask)


# ---------------------------------------------------------------------------------------
# autograd


def _per_channel(t: torch.Tensor, nd: int) -> torch.Tensor:
    """(C,) -> (1, C, 1, ...) to broadcast against (N, C, *spatial)."""
    return t.view((1, -1) + (1,) * (nd - 2))


def _per_plane(t: torch.Tensor, nd: int) -> torch.Tensor:
    """(N, C) -> (N, C, 1, ...)."""
    return t.view(tuple(t.shape) + (1,) * (nd - 2))


def _activation_slope(y: torch.Tensor, activation: str, negative_slope: float):
    """act'(y) as a tensor (piecewise constant: no gradient flows through it), or None for
    the identity. Conventions of csrc/instance_norm.cpp (torch's relu/leaky_relu backward)."""
    y = y.detach()
    if activation == "relu":
        return torch.where(y <= 0, 0.0, 1.0).to(y.dtype)
    if activation == "leaky_relu":
        return torch.where(y > 0, 1.0, negative_slope).to(y.dtype)
    return None


def _setup_forward(ctx, inputs, output):
    x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation, slope = inputs
    _, mean, var = output
    ctx.mark_non_differentiable(mean, var)
    ctx.args = (use_input_stats, eps, activation, slope)
    ctx.has = (weight is not None, bias is not None, residual is not None)
    stats_grad = not use_input_stats and (ctx.needs_input_grad[3] or ctx.needs_input_grad[4])
    ctx.stats_grad = stats_grad
    ctx.save_for_backward(x, weight, bias, mean, var, running_mean if stats_grad else None,
                          running_var if stats_grad else None)


def _eval_grads_in_torch_ops(grad_out, x, weight, bias, running_mean, running_var, eps, activation, slope):
    """All first-order gradients when the running statistics normalize (use_input_stats=False)
    and themselves need gradients: written in torch ops, so every order of derivative, the
    running statistics' included, comes from autograd. With gy = grad_out * act'(y):
      grad_x = gy w rstd,   grad_w = sum gy (x - rm) rstd,   grad_b = sum gy,
      grad_rm = -sum gy w rstd,   grad_rv = -1/2 sum gy w (x - rm) rstd^3."""
    nd = x.dim()
    dtype = opmath_dtype(x.dtype)
    xf, gf = x.to(dtype), grad_out.to(dtype)
    rm = _per_channel(running_mean.to(dtype), nd)
    rstd = _per_channel(torch.rsqrt(running_var.to(dtype) + eps), nd)
    w = _per_channel(weight.to(dtype), nd) if weight is not None else torch.ones((), dtype=dtype)
    b = _per_channel(bias.to(dtype), nd) if bias is not None else torch.zeros((), dtype=dtype)
    xc = xf - rm
    slope_t = _activation_slope(xc * (w * rstd) + b, activation, slope)
    gy = gf if slope_t is None else gf * slope_t
    dims = (0,) + tuple(range(2, nd))
    grad_x = (gy * w * rstd).to(x.dtype)
    grad_w = (gy * xc * rstd).sum(dims).to(weight.dtype) if weight is not None else None
    grad_b = gy.sum(dims).to(bias.dtype) if bias is not None else None
    grad_rm = -(gy * w * rstd).sum(dims)
    grad_rv = -0.5 * (gy * w * xc * rstd.pow(3)).sum(dims)
    return grad_x, grad_w, grad_b, grad_rm.to(running_mean.dtype), grad_rv.to(running_var.dtype)


def _instance_norm_backward(ctx, grad_out, _grad_mean, _grad_var):
    x, weight, bias, mean, var, running_mean, running_var = ctx.saved_tensors
    use_input_stats, eps, activation, slope = ctx.args
    needs = ctx.needs_input_grad
    mask = [bool(needs[0]), weight is not None and bool(needs[1]), bias is not None and bool(needs[2])]
    grad_x = grad_w = grad_b = grad_rm = grad_rv = None
    if ctx.stats_grad:
        grad_x, grad_w, grad_b, grad_rm, grad_rv = _eval_grads_in_torch_ops(
            grad_out, x, weight, bias, running_mean, running_var, eps, activation, slope)
    elif any(mask):
        grad_x, grad_w, grad_b = _ops.instance_norm_backward(grad_out, x, weight, bias, mean, var, use_input_stats,
                                                             eps, activation, slope, mask)
    return (grad_x if mask[0] else None, grad_w if mask[1] else None, grad_b if mask[2] else None,
            grad_rm if needs[3] else None, grad_rv if needs[4] else None,
            grad_out if needs[5] else None, None, None, None, None)


def _setup_backward(ctx, inputs, output):
    grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation, slope, output_mask = inputs
    ctx.args = (use_input_stats, eps, activation, slope, tuple(bool(m) for m in output_mask))
    ctx.save_for_backward(grad_out, x, weight, bias, mean, var)


def _backward_backward(ctx, gg_x, gg_w, gg_b):
    """Vector-Jacobian product of instance_norm_backward, in differentiable torch ops.

    Per (n, c) plane of M elements, with xhat = (x - mu) * r, gy = g * act'(y) (act' piecewise
    constant), A = <gy>, B = <gy * xhat> (<.> the plane mean) and P(v) = v - <v> - xhat <v xhat>:
      grad_x = w r P(gy)              grad_w = sum M B           grad_b = sum M A
    so for upstream gradients (Gx, Gw, Gb):
      d g = act'(y) * (w r P(Gx) + Gw xhat + Gb)
      d w = sum_{n,s} Gx r (gy - A - xhat B)
      d x = r P(h) - w r^2 xhat (<Gx gy> - A <Gx> - B <Gx xhat>),  h = -w r (gy <Gx xhat> + B Gx) + Gw gy
    With running statistics (use_input_stats=False) mu and r are constants:
      d g = act'(y) * (w r Gx + Gw xhat + Gb),   d w = sum Gx r gy,   d x = Gw r gy.
    The statistics are recomputed from x in torch ops, so higher orders are exact too.
    """
    g, x, weight, bias, mean, var = ctx.saved_tensors
    use_input_stats, eps, activation, slope, output_mask = ctx.args
    gg_x = gg_x if output_mask[0] else None
    gg_w = gg_w if output_mask[1] else None
    gg_b = gg_b if output_mask[2] else None
    if gg_x is None and gg_w is None and gg_b is None:
        return (None,) * 11
    nd = x.dim()
    dims = tuple(range(2, nd))
    dtype = opmath_dtype(x.dtype)
    xf, gf = x.to(dtype), g.to(dtype)

    def plane_mean(t):
        return t.mean(dims, keepdim=True)

    if use_input_stats:
        mu = plane_mean(xf)
        xc = xf - mu
        r = torch.rsqrt(plane_mean(xc * xc) + eps)
    else:
        xc = xf - _per_plane(mean, nd)
        r = torch.rsqrt(_per_plane(var, nd) + eps)
    xhat = xc * r
    w = _per_channel(weight.to(dtype), nd) if weight is not None else None
    wr = r * w if w is not None else r
    b = _per_channel(bias.to(dtype), nd) if bias is not None else 0.0
    slope_t = _activation_slope(xc * wr + b, activation, slope)
    gy = gf if slope_t is None else gf * slope_t
    gx_up = gg_x.to(dtype) if gg_x is not None else None
    gw_up = _per_channel(gg_w.to(dtype), nd) if gg_w is not None else None
    gb_up = _per_channel(gg_b.to(dtype), nd) if gg_b is not None else None

    def project(v):
        return v - plane_mean(v) - xhat * plane_mean(v * xhat)

    # d g
    d_gy = torch.zeros_like(xf)
    if gx_up is not None:
        d_gy = d_gy + wr * (project(gx_up) if use_input_stats else gx_up)
    if gw_up is not None:
        d_gy = d_gy + gw_up * xhat
    if gb_up is not None:
        d_gy = d_gy + gb_up
    d_g = d_gy if slope_t is None else d_gy * slope_t

    reduce_dims = (0,) + dims
    d_w = None
    d_x = None
    if use_input_stats:
        A, B = plane_mean(gy), plane_mean(gy * xhat)
        if weight is not None and gx_up is not None:
            d_w = (gx_up * r * (gy - A - xhat * B)).sum(reduce_dims)
        h = torch.zeros_like(xf)
        if gx_up is not None:
            c_x = plane_mean(gx_up * xhat)
            h = h - wr * (gy * c_x + B * gx_up)
        if gw_up is not None:
            h = h + gw_up * gy
        d_x = r * project(h)
        if gx_up is not None:
            w1 = w if w is not None else 1.0
            d_x = d_x - w1 * r * r * xhat * (plane_mean(gx_up * gy) - A * plane_mean(gx_up) - B * c_x)
    else:
        if weight is not None and gx_up is not None:
            d_w = (gx_up * r * gy).sum(reduce_dims)
        if gw_up is not None:
            d_x = gw_up * r * gy
    return (d_g.to(g.dtype), d_x.to(x.dtype) if d_x is not None else None,
            d_w.to(weight.dtype) if d_w is not None else None, None, None, None, None, None, None, None, None)


register_autograd("fastgen::instance_norm", _instance_norm_backward, setup_context=_setup_forward)
register_autograd("fastgen::instance_norm_backward", _backward_backward, setup_context=_setup_backward)


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


@torch.library.register_kernel("fastgen::instance_norm", "cuda")
def _instance_norm_cuda(x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation,
                        negative_slope):
    from fastgen.triton_kernels import instance_norm as kernels

    return kernels.instance_norm(x, weight, bias, running_mean, running_var, residual, use_input_stats, eps,
                                 activation, negative_slope)


@torch.library.register_kernel("fastgen::instance_norm_backward", "cuda")
def _instance_norm_backward_cuda(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation,
                                 negative_slope, output_mask):
    from fastgen.triton_kernels import instance_norm as kernels

    return kernels.instance_norm_backward(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation,
                                          negative_slope, output_mask)
