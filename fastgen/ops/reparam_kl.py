"""VAE reparameterization + KL: fake impls and the CUDA (Triton)
kernels for fastgen::reparam_kl, fastgen::kl_normal, fastgen::reparam_kl_backward.

The math lives in csrc/reparam_kl.cpp, the autograd (double backward included) in
csrc/autograd/reparam_kl.cpp.
"""

from __future__ import annotations

import torch

from fastgen._checks import acc_dtype, check_op_like, check_op_reduction, check_same_device
from fastgen._layout import batch_major, in_layout_of
from fastgen.ops._triton import register_cuda

_ops = torch.ops.fastgen


def _check_pair(op: str, mu, logvar) -> None:
    torch._check(
        mu.dim() >= 1, lambda: f"fastgen.{op}: mu must have a batch dimension (at least 1-D), got a 0-d tensor"
    )
    torch._check(
        mu.dtype.is_floating_point, lambda: f"fastgen.{op}: mu must be a floating-point tensor, got {mu.dtype}"
    )
    torch._check(
        logvar.shape == mu.shape,
        lambda: f"fastgen.{op}: logvar must have the shape of mu {tuple(mu.shape)}, got {tuple(logvar.shape)}",
    )
    torch._check(
        logvar.dtype == mu.dtype,
        lambda: f"fastgen.{op}: logvar must have the dtype of mu ({mu.dtype}), got {logvar.dtype}",
    )
    torch._check(
        logvar.device == mu.device,
        lambda: f"fastgen.{op}: logvar must be on the device of mu ({mu.device}), got {logvar.device}",
    )


def _check_seed(op: str, seed) -> None:
    torch._check(
        seed.dtype == torch.int64 and seed.numel() == 1,
        lambda: f"fastgen.{op}: seed must be a one-element int64 tensor, got {seed.dtype} of shape {tuple(seed.shape)}",
    )


def check_forward_args(op, mu, logvar, eps, seed, reduction, want_z=True) -> None:
    """The checks csrc/reparam_kl.cpp makes, for the fake impls and the Triton launchers."""
    _check_pair(op, mu, logvar)
    check_op_reduction(op, reduction)
    if eps is not None:
        check_op_like(op, "eps", eps, "mu", mu)
    if want_z and eps is None:
        torch._check(seed is not None, lambda: f"fastgen.{op}: either eps or seed must be given")
        _check_seed(op, seed)


def check_backward_args(grad_z, grad_kl, mu, logvar, eps, seed, reduction, eps_grad) -> None:
    op = "reparam_kl_backward"
    _check_pair(op, mu, logvar)
    check_op_reduction(op, reduction)
    if grad_z is not None:
        check_op_like(op, "grad_z", grad_z, "mu", mu)
    if eps is not None:
        check_op_like(op, "eps", eps, "mu", mu)
    if grad_z is not None and eps is None:
        torch._check(
            seed is not None, lambda: f"fastgen.{op}: grad_z needs eps or the forward's seed to regenerate the noise"
        )
        _check_seed(op, seed)
    torch._check(not eps_grad or eps is not None, lambda: f"fastgen.{op}: eps_grad=True needs eps")
    if grad_kl is not None:
        if reduction == "none":
            torch._check(
                grad_kl.shape == (mu.shape[0],),
                lambda: (
                    f"fastgen.{op}: grad_kl must have shape ({mu.shape[0]},) for reduction='none', "
                    f"got {tuple(grad_kl.shape)}"
                ),
            )
        else:
            torch._check(
                grad_kl.numel() == 1,
                lambda: (
                    f"fastgen.{op}: grad_kl must be a scalar for reduction='{reduction}', got shape "
                    f"{tuple(grad_kl.shape)}"
                ),
            )


def _kl_like(mu: torch.Tensor, reduction: str) -> torch.Tensor:
    return mu.new_empty((mu.shape[0],) if reduction == "none" else ())


@torch.library.register_fake("fastgen::reparam_kl")
def _reparam_kl_fake(mu, logvar, eps, seed, reduction):
    check_forward_args("reparam_kl", mu, logvar, eps, seed, reduction)
    check_same_device("reparam_kl", "mu", mu, logvar=logvar, eps=eps, seed=seed)
    return torch.empty_like(batch_major(mu)), _kl_like(mu, reduction)


@torch.library.register_fake("fastgen::kl_normal")
def _kl_normal_fake(mu, logvar, reduction):
    check_forward_args("kl_normal", mu, logvar, None, None, reduction, want_z=False)
    return _kl_like(mu, reduction)


@torch.library.register_fake("fastgen::reparam_kl_backward")
def _reparam_kl_backward_fake(grad_z, grad_kl, mu, logvar, eps, seed, reduction, eps_grad):
    check_backward_args(grad_z, grad_kl, mu, logvar, eps, seed, reduction, eps_grad)
    check_same_device(
        "reparam_kl_backward", "mu", mu, grad_z=grad_z, grad_kl=grad_kl, logvar=logvar, eps=eps, seed=seed
    )
    layout = batch_major(mu)
    grad_eps = torch.empty_like(layout) if eps_grad else mu.new_empty((0,))
    return torch.empty_like(layout), torch.empty_like(layout), grad_eps


def regenerate_noise(mu: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """The eps that reparam_kl drew for `mu` from `seed`, materialized (z of mu=0, logvar=0), as
    csrc/autograd/reparam_kl.cpp regenerates it for the double backward (tests use it).

    Noise is indexed by memory position in the layout the kernels walk, so the zeros are
    made in that layout."""
    zeros = torch.zeros_like(batch_major(mu.detach()))
    return _ops.reparam_kl(zeros, zeros, None, seed, "none")[0]


# ---------------------------------------------------------------------------------------
# CUDA: the checks and layout above, then the Triton launchers (fastgen.triton_kernels.reparam_kl)


def _in_layout(t, mu_):
    return in_layout_of(t, mu_) if t is not None else None


def _reparam_kl_cuda(kernels, mu, logvar, eps, seed, reduction):
    check_forward_args("reparam_kl", mu, logvar, eps, seed, reduction)
    mu_ = batch_major(mu)
    return kernels.reparam_kl(
        mu_, in_layout_of(logvar, mu_), _in_layout(eps, mu_), seed, reduction, acc_dtype(mu.dtype)
    )


def _kl_normal_cuda(kernels, mu, logvar, reduction):
    check_forward_args("kl_normal", mu, logvar, None, None, reduction, want_z=False)
    mu_ = batch_major(mu)
    return kernels.kl_normal(mu_, in_layout_of(logvar, mu_), reduction, acc_dtype(mu.dtype))


def _reparam_kl_backward_cuda(kernels, grad_z, grad_kl, mu, logvar, eps, seed, reduction, eps_grad):
    check_backward_args(grad_z, grad_kl, mu, logvar, eps, seed, reduction, eps_grad)
    mu_ = batch_major(mu)
    return kernels.reparam_kl_backward(
        _in_layout(grad_z, mu_),
        grad_kl,
        mu_,
        in_layout_of(logvar, mu_),
        _in_layout(eps, mu_),
        seed,
        reduction,
        eps_grad,
        acc_dtype(mu.dtype),
    )


register_cuda(
    "reparam_kl",
    {"reparam_kl": _reparam_kl_cuda, "kl_normal": _kl_normal_cuda, "reparam_kl_backward": _reparam_kl_backward_cuda},
)
