"""CUDA registration of the Triton launchers, written once for every op (imports no Triton).

`register_cuda(family, {op: fn})` registers, for each op of a family, its CUDA function:
fn(kernels, *args), where kernels is the module fastgen.triton_kernels.<family>, imported on the
first CUDA call (importing fastgen never imports Triton). fn is the op's glue (fastgen/ops/
<family>.py): the argument checks, the layout and the accumulation dtype, then the launcher
with checked tensors and plain parameters. It does what torch.library.triton_op does for an op
defined in Python, for our ops whose schemas are defined in C++ (csrc/registration.cpp, which
triton_op cannot take: it defines the op itself, from the function's Python signature):

- torch.library.register_kernel(op, "cuda", fn): eager calls run the launcher, which launches
  the Triton kernels directly (no per-call tracing machinery);
- a FunctionalTensorMode rule (torch.library.register_torch_dispatch, the rule triton_op
  registers), for every op not in `untraced`: when torch.compile's AOTAutograd functionalizes a
  graph with CUDA inputs, the op is replaced by its CUDA function traced with every kernel
  wrapped in torch.library.wrap_triton, so Inductor sees the Triton kernels themselves
  (triton_kernel_wrapper_functional nodes) instead of an opaque call. torch.export keeps the op
  (as it keeps triton_op ops unless asked to decompose them), so exported programs carry
  fastgen::op.

Launchers call `launch(kernel)[grid](...)` (triton_kernels/_common.py): the kernel itself in
eager, wrap_triton(kernel) inside the rule (which sets _common's thread-local flag).
"""

from __future__ import annotations

import importlib
import types
from typing import Callable

import torch

_CUDA: dict[str, dict[str, Callable]] = {}  # family -> op -> its registered CUDA function


def _on_cuda(args, kwargs) -> bool:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    tensors += [
        t for a in (*args, *kwargs.values()) if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)
    ]
    return bool(tensors) and all(t.device.type == "cuda" for t in tensors)


def _decomposition(fn):
    def rule(mode, op, types, args, kwargs):
        from torch._subclasses.fake_tensor import FakeTensor
        from torch._subclasses.functional_tensor import FunctionalTensor
        from torch.export._trace import custom_triton_ops_decomposition_disabled

        plain = all(issubclass(t, (FakeTensor, FunctionalTensor)) or t is torch.Tensor for t in types)
        if custom_triton_ops_decomposition_disabled() or not plain or not _on_cuda(args, kwargs):
            return mode.__torch_dispatch__(op, types, args, kwargs)
        # CUDA tensors only: Triton is there (the kernels' flag lives with them).
        from fastgen.triton_kernels._common import traced_launch

        with traced_launch(), mode:
            return fn(*args, **kwargs)

    return rule


def _bind(family: str, fn: Callable) -> Callable:
    """fn with its family's kernel module as first argument, imported on the first call only
    (the module lookup stays off the per-call path)."""
    kernels = None

    def cuda(*args, **kwargs):
        nonlocal kernels
        if kernels is None:
            kernels = importlib.import_module(f"fastgen.triton_kernels.{family}")
        return fn(kernels, *args, **kwargs)

    cuda.__name__ = cuda.__qualname__ = fn.__name__
    cuda.__doc__ = fn.__doc__
    return cuda


def register_cuda(family: str, functions: dict[str, Callable], *, untraced=()) -> None:
    """Registers functions[op](kernels, *args) as the CUDA kernel of fastgen::op for each op and,
    unless the op is in `untraced` (its launcher does data-dependent host work, or the tracer
    cannot follow it yet), as the op's decomposition into Triton kernels for torch.compile."""
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    for op, fn in functions.items():
        cuda = _bind(family, fn)
        torch.library.register_kernel(f"fastgen::{op}", "cuda", cuda)
        if op not in untraced:
            torch.library.register_torch_dispatch(f"fastgen::{op}", FunctionalTensorMode, _decomposition(cuda))
        _CUDA.setdefault(family, {})[op] = cuda


def cuda_functions(family: str) -> types.SimpleNamespace:
    """The registered CUDA functions of a family by op name (checks + Triton launchers: what the
    CUDA key runs; the tests call them on CPU tensors under TRITON_INTERPRET=1)."""
    return types.SimpleNamespace(**_CUDA[family])
