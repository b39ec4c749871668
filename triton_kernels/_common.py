"""Helpers shared by the Triton kernel modules: the only fastgen module they import (the kernels
are a leaf layer: torch, triton and this file; fastgen/ops/<family>.py checks the arguments,
chooses layouts and the accumulation dtype, and calls the launchers with the results)."""

from __future__ import annotations

import contextlib
import inspect
import threading

import torch
import triton.language as tl

_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64}


def tl_dtype(acc: torch.dtype):
    """The Triton dtype of an accumulation dtype (fastgen._checks.acc_dtype: float32 or float64),
    the COMPUTE constexpr of the kernels."""
    return _TL_DTYPES[acc]


# The dtypes every kernel is compiled for ahead of time: (name, pointer type of a tensor in that
# dtype, pointer type of float accumulation buffers, compute dtype).
AOT_DTYPES = (
    ("fp32", "*fp32", "*fp32", tl.float32),
    ("bf16", "*bf16", "*fp32", tl.float32),
    ("fp16", "*fp16", "*fp32", tl.float32),
    ("fp64", "*fp64", "*fp64", tl.float64),
)


def kernel_params(kernel) -> list[tuple[str, bool]]:
    """(name, is constexpr) for each parameter of a @triton.jit kernel, compiled or interpreted,
    under @triton.autotune / @triton.heuristics or not (constexpr: annotated tl.constexpr, Triton's
    own rule)."""
    while hasattr(kernel, "fn"):
        kernel = kernel.fn
    return [(name, "constexpr" in str(p.annotation)) for name, p in inspect.signature(kernel).parameters.items()]


def aot_signature(kernel, ptr: str, acc: str, types: dict | None = None) -> dict:
    """The ahead-of-time signature of a kernel (its parameters, in order) for one AOT_DTYPES row:
    "constexpr" for tl.constexpr parameters, `ptr` (a tensor in the row's dtype) for the pointers
    (parameters named *_ptr), "i32" for the other scalars; `types` overrides by name: "*acc" (a
    float accumulation buffer: `acc`), "acc" (a scalar in the accumulation dtype), or a Triton
    type ("*i64", "fp32", ...)."""
    types = types or {}
    special = {"*acc": acc, "acc": acc.lstrip("*")}
    sig = {}
    for name, constexpr in kernel_params(kernel):
        if constexpr:
            sig[name] = "constexpr"
        elif name in types:
            sig[name] = special.get(types[name], types[name])
        else:
            sig[name] = ptr if name.endswith("_ptr") else "i32"
    unknown = set(types) - set(sig)
    if unknown:
        raise ValueError(f"the kernel has no parameters {sorted(unknown)}")
    return sig


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1, read when
    @triton.jit decorates, as Triton itself does)."""
    import os

    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def autotune_configs(configs: list, interpreter_config):
    """The configs @triton.autotune gets: all of them on a GPU (it times them on first use of
    each key), one under the interpreter (which fails @triton.autotune with several)."""
    return [interpreter_config] if interpreting() else list(configs)


def config_options(config) -> dict:
    """A triton.Config's compile options, for the ahead-of-time specs."""
    return {"num_warps": config.num_warps, "num_stages": config.num_stages}


_state = threading.local()


def tracing() -> bool:
    """True while a launcher runs under fastgen.ops._triton's FunctionalTensorMode rule (its
    kernels must be wrapped for the tracer)."""
    return getattr(_state, "depth", 0) > 0


@contextlib.contextmanager
def traced_launch():
    """The launchers called inside launch wrap_triton(kernel) (the rule's `with` block)."""
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1


def launch(kernel):
    """What a launcher indexes with its grid: the kernel itself, or torch.library.wrap_triton of
    it while fastgen.ops._triton's FunctionalTensorMode rule traces the launcher for
    torch.compile (Inductor then sees the kernel)."""
    if tracing():
        from torch.library import wrap_triton

        return wrap_triton(kernel)
    return kernel
