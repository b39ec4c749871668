"""Helpers shared by the Triton kernel modules."""
from __future__ import annotations

import torch
import triton.language as tl


def compute_dtype(dtype: torch.dtype):
    """The Triton dtype the kernels compute and accumulate in: float64 for float64 tensors,
    float32 for every other floating dtype (as the C++ kernels' opmath)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


# The dtypes every kernel is compiled for ahead of time: (name, pointer type of a tensor in that
# dtype, pointer type of float accumulation buffers, compute dtype).
AOT_DTYPES = (
    ("fp32", "*fp32", "*fp32", tl.float32),
    ("bf16", "*bf16", "*fp32", tl.float32),
    ("fp16", "*fp16", "*fp32", tl.float32),
    ("fp64", "*fp64", "*fp64", tl.float64),
)


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


def launch(kernel):
    """What a launcher indexes with its grid: the kernel itself, or torch.library.wrap_triton of
    it while fastgen.ops._triton's FunctionalTensorMode rule traces the launcher for
    torch.compile (Inductor then sees the kernel)."""
    from fastgen.ops._triton import tracing

    if tracing():
        from torch.library import wrap_triton

        return wrap_triton(kernel)
    return kernel
