"""The rules every Python layer shares: dtype rules, reductions, activations, and the argument
checks of fastgen.functional, fastgen.nn and the fake impls (fastgen/ops/).

Each check raises with a message that names the function, the argument, what was expected and
what came, in the form the C++ kernels use: "fastgen.<fn>: <arg> must be ..., got ...".
"""

from __future__ import annotations

import numbers

import torch

REDUCTIONS = ("none", "mean", "sum")

# The activations the instance-norm family fuses, as the op's schema spells them ("none" for
# no activation; the Python API takes None).
ACTIVATIONS = ("none", "relu", "leaky_relu")

INTEGER_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute, accumulate and return statistics in (their "opmath"):
    float64 for float64 tensors, float32 for every other floating dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-sample losses reduced as torch's losses do ("none", "mean" or "sum")."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def check_activation(fn: str, activation) -> str:
    """The Python API's activation (None, "relu" or "leaky_relu"), returned in the schema's
    spelling (ACTIVATIONS: "none" for None)."""
    if activation is None:
        return "none"
    if activation == "none" or activation not in ACTIVATIONS:
        fail(fn, f"activation must be None, 'relu' or 'leaky_relu', got {activation!r}")
    return activation


def fail(fn: str, message: str, exc: type[Exception] = ValueError):
    raise exc(f"fastgen.{fn}: {message}")


def check_tensor(fn: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        fail(fn, f"{name} must be a torch.Tensor, got {type(t).__name__}", TypeError)


def check_floating(fn: str, name: str, t: torch.Tensor) -> None:
    check_tensor(fn, name, t)
    if not t.dtype.is_floating_point:
        fail(
            fn,
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {t.dtype}",
            TypeError,
        )


def check_batched(fn: str, name: str, t: torch.Tensor) -> None:
    if t.dim() == 0:
        fail(fn, f"{name} must have a batch dimension (at least 1-D), got a 0-d tensor")


def check_same_dtype(fn: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """`t` must have the dtype of `ref`, except that under torch.autocast two floating-point dtypes
    may meet: the op's autocast kernel brings them to one (csrc/autocast.cpp)."""
    if t.dtype == ref.dtype:
        return
    if t.is_floating_point() and ref.is_floating_point() and torch.is_autocast_enabled(ref.device.type):
        return
    fail(fn, f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}", TypeError)


def check_like(fn: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """`t` must have the shape, dtype and device of `ref`."""
    check_tensor(fn, name, t)
    if t.shape != ref.shape:
        fail(fn, f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
    check_same_dtype(fn, name, t, ref_name, ref)
    if t.device != ref.device:
        fail(fn, f"{name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def check_number(fn: str, name: str, value) -> None:
    """A Python int or float (bool excluded): what float(value) would otherwise reject with a
    message that names neither the function nor the argument."""
    if type(value) in (float, int):  # the common case, without the slower ABC check (per call)
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(fn, f"{name} must be a number, got {type(value).__name__}", TypeError)


def check_reduction(fn: str, reduction) -> None:
    if reduction not in REDUCTIONS:
        fail(fn, f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_generator(fn: str, generator, device: torch.device) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        fail(fn, f"generator must be a torch.Generator or None, got {type(generator).__name__}", TypeError)
    if generator.device.type != device.type:
        fail(
            fn,
            f"generator must be a {device.type} generator for {device.type} inputs, got a "
            f"{generator.device.type} generator",
        )


def check_same_device(fn: str, ref_name: str, ref: torch.Tensor, **tensors) -> None:
    """Every tensor in `tensors` (None skipped) on the device of `ref`. The fake impls need it:
    one meta argument sends a call to them whatever the others are (a meta seed beside CPU
    tensors returned uninitialised memory), and so do the CUDA launchers."""
    for name, t in tensors.items():
        if t is not None and t.device != ref.device:
            fail(fn, f"{name} must be on the device of {ref_name} ({ref.device}), got {t.device}")


INT64_MAX = 2**63 - 1


def check_int_product(fn: str, what: str, a: int, b: int) -> None:
    """a * b of sizes or factors must fit in int64, as the kernels compute it (symbolic sizes
    under torch.compile are left to the kernel's own check)."""
    if type(a) is int and type(b) is int and abs(a * b) > INT64_MAX:
        fail(fn, f"{what} overflows int64 ({a} * {b})")


# ---------------------------------------------------------------------------------------------
# Op-level checks: the fake impls and the CUDA functions (fastgen/ops/) make the checks the C++
# kernels make, with their messages (csrc/common/checks.h) and in torch._check's form: a
# RuntimeError as TORCH_CHECK raises, and symbolic sizes under torch.compile become guards.


def check_op_like(op: str, name: str, t, ref_name: str, ref) -> None:
    """`t` must have the shape, dtype and device of `ref` (autocast has already unified dtypes
    by the time an op runs)."""
    torch._check(
        t.shape == ref.shape,
        lambda: f"fastgen.{op}: {name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}",
    )
    torch._check(
        t.dtype == ref.dtype,
        lambda: f"fastgen.{op}: {name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}",
    )
    torch._check(
        t.device == ref.device,
        lambda: f"fastgen.{op}: {name} must be on the device of {ref_name} ({ref.device}), got {t.device}",
    )


def check_op_reduction(op: str, reduction: str) -> None:
    torch._check(
        reduction in REDUCTIONS, lambda: f"fastgen.{op}: reduction must be 'none', 'mean' or 'sum', got '{reduction}'"
    )
