"""CUDA registration of the Triton launchers, written once for every op (imports no Triton).

`@cuda_triton("fastgen::op")` on an op's CUDA function does what torch.library.triton_op does
for an op defined in Python, for our ops whose schemas are defined in C++ (csrc/registration.cpp,
which triton_op cannot take: it defines the op itself, from the function's Python signature):

- torch.library.register_kernel(op, "cuda", fn): eager calls run the launcher, which launches
  the Triton kernels directly (no per-call tracing machinery);
- a FunctionalTensorMode rule (torch.library.register_torch_dispatch, the rule triton_op
  registers): when torch.compile's AOTAutograd functionalizes a graph with CUDA inputs, the op
  is replaced by its launcher traced with every kernel wrapped in torch.library.wrap_triton, so
  Inductor sees the Triton kernels themselves (triton_kernel_wrapper_functional nodes) instead
  of an opaque call. torch.export keeps the op (as it keeps triton_op ops unless asked to
  decompose them), so exported programs carry fastgen::op.

Launchers call `launch(kernel)[grid](...)` (triton_kernels/_common.py): the kernel itself in
eager, wrap_triton(kernel) while this rule traces.
"""
from __future__ import annotations

import threading

import torch

_state = threading.local()


def tracing() -> bool:
    """True while a launcher runs under the FunctionalTensorMode rule (its kernels must be
    wrapped for the tracer)."""
    return getattr(_state, "depth", 0) > 0


def _on_cuda(args, kwargs) -> bool:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    tensors += [t for a in (*args, *kwargs.values()) if isinstance(a, (list, tuple)) for t in a
                if isinstance(t, torch.Tensor)]
    return bool(tensors) and all(t.device.type == "cuda" for t in tensors)


def _decomposition(fn):
    def rule(mode, op, types, args, kwargs):
        from torch._subclasses.fake_tensor import FakeTensor
        from torch._subclasses.functional_tensor import FunctionalTensor
        from torch.export._trace import custom_triton_ops_decomposition_disabled

        plain = all(issubclass(t, (FakeTensor, FunctionalTensor)) or t is torch.Tensor for t in types)
        if custom_triton_ops_decomposition_disabled() or not plain or not _on_cuda(args, kwargs):
            return mode.__torch_dispatch__(op, types, args, kwargs)
        _state.depth = getattr(_state, "depth", 0) + 1
        try:
            with mode:
                return fn(*args, **kwargs)
        finally:
            _state.depth -= 1

    return rule


def cuda_triton(qualname: str, *, traceable: bool = True):
    """Registers fn as the CUDA kernel of qualname and, if its launcher can be traced (no
    data-dependent host code), as the op's decomposition into Triton kernels for torch.compile."""

    def register(fn):
        torch.library.register_kernel(qualname, "cuda", fn)
        if traceable:
            from torch._subclasses.functional_tensor import FunctionalTensorMode

            torch.library.register_torch_dispatch(qualname, FunctionalTensorMode, _decomposition(fn))
        return fn

    return register
