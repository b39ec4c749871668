"""Fused instance norm (+activation, +residual): fake impls and the CUDA (Triton) kernels for
fastgen::instance_norm and fastgen::instance_norm_backward.

The math lives in csrc/instance_norm.cpp, the autograd (double backward included) in
csrc/autograd/instance_norm.cpp.
"""

from __future__ import annotations

import torch

from fastgen._checks import ACTIVATIONS, acc_dtype, check_op_like, check_same_device
from fastgen._layout import channel_major_or_innermost, in_layout_of, is_channels_innermost
from fastgen.ops._triton import register_cuda

_ops = torch.ops.fastgen


def _spatial(x) -> int:
    m = 1
    for s in x.shape[2:]:
        m = m * s
    return m


def _check_input(op: str, x) -> None:
    torch._check(
        x.dtype.is_floating_point, lambda: f"fastgen.{op}: input must be a floating-point tensor, got {x.dtype}"
    )
    torch._check(
        x.dim() >= 2,
        lambda: (
            f"fastgen.{op}: input must have at least 2 dimensions (N, C, ...), got {x.dim()}-D input "
            f"of shape {tuple(x.shape)}"
        ),
    )


def _check_activation(op: str, activation: str) -> None:
    torch._check(
        activation in ACTIVATIONS,
        lambda: f"fastgen.{op}: activation must be 'none', 'relu' or 'leaky_relu', got '{activation}'",
    )


def _check_channel_param(op: str, name: str, t, x) -> None:
    if t is None:
        return
    C = x.shape[1]
    torch._check(
        t.dtype.is_floating_point, lambda: f"fastgen.{op}: {name} must be a floating-point tensor, got {t.dtype}"
    )
    torch._check(
        t.dim() == 1 and t.shape[0] == C,
        lambda: f"fastgen.{op}: {name} must have shape ({C},) (the input's channels), got {tuple(t.shape)}",
    )
    torch._check(
        t.device == x.device,
        lambda: f"fastgen.{op}: {name} must be on the device of input ({x.device}), got {t.device}",
    )


def _check_stats(op: str, name: str, t, x) -> None:
    N, C = x.shape[0], x.shape[1]
    want = acc_dtype(x.dtype)
    torch._check(
        t.dim() == 2 and t.shape[0] == N and t.shape[1] == C,
        lambda: f"fastgen.{op}: {name} must have shape ({N}, {C}), got {tuple(t.shape)}",
    )
    torch._check(t.dtype == want, lambda: f"fastgen.{op}: {name} must be {want} for {x.dtype} input, got {t.dtype}")
    torch._check(
        t.device == x.device,
        lambda: f"fastgen.{op}: {name} must be on the device of input ({x.device}), got {t.device}",
    )


def check_forward_args(x, weight, bias, running_mean, running_var, residual, use_input_stats, activation) -> None:
    """The checks csrc/instance_norm.cpp makes, for the fake impls and the Triton launchers."""
    op = "instance_norm"
    _check_input(op, x)
    _check_activation(op, activation)
    _check_channel_param(op, "weight", weight, x)
    _check_channel_param(op, "bias", bias, x)
    if use_input_stats:
        if _spatial(x) == 1:
            raise ValueError(
                f"fastgen.{op}: Expected more than 1 spatial element when training, got input size {list(x.shape)}"
            )
    else:
        torch._check(
            running_mean is not None and running_var is not None,
            lambda: f"fastgen.{op}: running_mean and running_var must be given when use_input_stats is False",
        )
        _check_channel_param(op, "running_mean", running_mean, x)
        _check_channel_param(op, "running_var", running_var, x)
    if residual is not None:
        check_op_like(op, "residual", residual, "input", x)


def check_backward_args(grad_out, x, weight, bias, mean, var, activation, output_mask) -> None:
    op = "instance_norm_backward"
    _check_input(op, x)
    _check_activation(op, activation)
    check_op_like(op, "grad_out", grad_out, "input", x)
    _check_stats(op, "mean", mean, x)
    _check_stats(op, "var", var, x)
    _check_channel_param(op, "weight", weight, x)
    _check_channel_param(op, "bias", bias, x)
    torch._check(
        not output_mask[1] or weight is not None, lambda: f"fastgen.{op}: output_mask[1] (grad_weight) needs weight"
    )
    torch._check(not output_mask[2] or bias is not None, lambda: f"fastgen.{op}: output_mask[2] (grad_bias) needs bias")


def backward_outputs_like(x, weight, bias, output_mask):
    """Empty outputs of instance_norm_backward with the strides and dtypes every backend returns."""
    layout = channel_major_or_innermost(x)
    grad_input = torch.empty_like(layout) if output_mask[0] else x.new_empty((0,))
    grad_weight = x.new_empty(weight.shape, dtype=weight.dtype) if output_mask[1] else x.new_empty((0,))
    grad_bias = x.new_empty(bias.shape, dtype=bias.dtype) if output_mask[2] else x.new_empty((0,))
    return grad_input, grad_weight, grad_bias


@torch.library.register_fake("fastgen::instance_norm")
def _instance_norm_fake(
    x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation, negative_slope
):
    check_forward_args(x, weight, bias, running_mean, running_var, residual, use_input_stats, activation)
    check_same_device(
        "instance_norm",
        "input",
        x,
        weight=weight,
        bias=bias,
        running_mean=running_mean,
        running_var=running_var,
        residual=residual,
    )
    stats = x.new_empty((x.shape[0], x.shape[1]), dtype=acc_dtype(x.dtype))
    return torch.empty_like(channel_major_or_innermost(x)), stats, torch.empty_like(stats)


@torch.library.register_fake("fastgen::instance_norm_backward")
def _instance_norm_backward_fake(
    grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation, negative_slope, output_mask
):
    check_backward_args(grad_out, x, weight, bias, mean, var, activation, output_mask)
    check_same_device(
        "instance_norm_backward", "input", x, grad_out=grad_out, weight=weight, bias=bias, mean=mean, var=var
    )
    return backward_outputs_like(x, weight, bias, output_mask)


# ---------------------------------------------------------------------------------------
# CUDA: the checks and layouts above, then the Triton launchers (fastgen.triton_kernels.instance_norm)


def _interleaved(x_: torch.Tensor) -> bool:
    """Whether x_ (contiguous or channels-innermost) has its channels innermost in memory."""
    return is_channels_innermost(x_) and not x_.is_contiguous()


def _walked_like(t: torch.Tensor, x_: torch.Tensor) -> torch.Tensor:
    """An operand of x_'s shape that the kernels can index with x_'s geometry (computed from the
    sizes): itself when it has x_'s layout, whatever the strides of its size-1 dims; else a copy."""
    same = is_channels_innermost(t) if _interleaved(x_) else t.is_contiguous()
    return t if same else in_layout_of(t, x_)


def _instance_norm_cuda(
    kernels, x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation, negative_slope
):
    check_forward_args(x, weight, bias, running_mean, running_var, residual, use_input_stats, activation)
    x_ = channel_major_or_innermost(x)
    res_ = _walked_like(residual, x_) if residual is not None else None
    return kernels.instance_norm(
        x_,
        weight,
        bias,
        running_mean,
        running_var,
        res_,
        use_input_stats,
        eps,
        activation,
        negative_slope,
        _interleaved(x_),
        acc_dtype(x.dtype),
    )


def _instance_norm_backward_cuda(
    kernels, grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation, negative_slope, output_mask
):
    check_backward_args(grad_out, x, weight, bias, mean, var, activation, output_mask)
    x_ = channel_major_or_innermost(x)
    outputs = backward_outputs_like(x, weight, bias, output_mask)
    return kernels.instance_norm_backward(
        _walked_like(grad_out, x_),
        x_,
        weight,
        bias,
        mean,
        var,
        use_input_stats,
        eps,
        activation,
        negative_slope,
        output_mask,
        outputs,
        _interleaved(x_),
        acc_dtype(x.dtype),
    )


register_cuda(
    "instance_norm",
    {"instance_norm": _instance_norm_cuda, "instance_norm_backward": _instance_norm_backward_cuda},
    untraced={"instance_norm_backward"},
)
