"""Fused instance norm (+activation, +residual): fake impls and the CUDA (Triton) kernels for
fastgen::instance_norm and fastgen::instance_norm_backward.

The math lives in csrc/instance_norm.cpp, the autograd (double backward included) in
csrc/autograd/instance_norm.cpp.
"""
from __future__ import annotations

import torch

from fastgen._checks import check_same_device
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
    check_same_device("instance_norm", "input", x, weight=weight, bias=bias, running_mean=running_mean,
                      running_var=running_var, residual=residual)
    stats = x.new_empty((x.shape[0], x.shape[1]), dtype=opmath_dtype(x.dtype))
    return torch.empty_like(channel_major_or_innermost(x)), stats, torch.empty_like(stats)


@torch.library.register_fake("fastgen::instance_norm_backward")
def _instance_norm_backward_fake(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation,
                                 negative_slope, output_mask):
    check_backward_args(grad_out, x, weight, bias, mean, var, activation, output_mask)
    check_same_device("instance_norm_backward", "input", x, grad_out=grad_out, weight=weight, bias=bias, mean=mean,
                      var=var)
    return backward_outputs_like(x, weight, bias, output_mask)


# ---------------------------------------------------------------------------------------
# CUDA: Triton kernels, imported on first use


from fastgen.ops._triton import cuda_triton  # noqa: E402  (imports no Triton)


@cuda_triton("fastgen::instance_norm")
def _instance_norm_cuda(x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation,
                        negative_slope):
    from fastgen.triton_kernels import instance_norm as kernels

    return kernels.instance_norm(x, weight, bias, running_mean, running_var, residual, use_input_stats, eps,
                                 activation, negative_slope)


@cuda_triton("fastgen::instance_norm_backward", traceable=False)
def _instance_norm_backward_cuda(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation,
                                 negative_slope, output_mask):
    from fastgen.triton_kernels import instance_norm as kernels

    return kernels.instance_norm_backward(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation,
                                          negative_slope, output_mask)
