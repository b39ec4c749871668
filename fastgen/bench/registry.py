"""What a benchmark case is, and the registry the runner and the pytest-benchmark files read.

A case names an op (or layer, or training step), its standard shapes, and how to build a
Workload for one shape and dtype: the inputs, the fastgen callable, the eager PyTorch
callable written as a user would (torch.compile of the same eager callable is the third
contender), and the minimal bytes a fused implementation must move (for the roofline).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

PASSES = ("fwd", "fwd+bwd")


@dataclass
class Workload:
    inputs: tuple  # positional arguments of fastgen_fn and eager_fn
    fastgen_fn: Callable[..., Any]
    eager_fn: Callable[..., Any]
    grad_inputs: Sequence[int]  # positions of the inputs to differentiate
    grad_outputs: Callable[[Any], tuple]  # outputs -> the tensors backward starts from
    upstream_grads: tuple  # d(loss)/d(those tensors)
    min_bytes: dict  # pass -> bytes a fused implementation must read + write
    # Extra tensors each implementation differentiates in "fwd+bwd", by implementation name
    # ("fastgen", "eager", "compile"): e.g. a model's parameters for a training-step case, where
    # fastgen_fn runs the fastgen model and eager_fn (and so torch.compile) its eager twin.
    params: dict = field(default_factory=dict)
    # Optional check of each implementation's first result (the outputs for "fwd", the gradients
    # for "fwd+bwd"): check(impl, pass_name, result) -> None, or why the result is wrong. A wrong
    # result is reported as that implementation's error instead of being timed (e.g. torch.compile
    # silently dropping a double-backward gradient).
    check: Callable[[str, str, Any], str | None] | None = None
    # Reference points timed interleaved with the contenders and reported beside them (not
    # contenders themselves): name -> pass -> no-argument callable, e.g. the bare matmuls an
    # op is built around, {"bare matmuls": {"fwd": ..., "fwd+bwd": ...}}.
    baselines: dict = field(default_factory=dict)

    def __post_init__(self):
        for i in self.grad_inputs:
            self.inputs[i].requires_grad_(True)


@dataclass
class Case:
    name: str
    family: str
    shapes: dict  # {"quick": [...], "full": [...]}
    make: Callable[..., Workload]  # make(shape, dtype) on the CPU; make(shape, dtype, device=...) elsewhere
    description: str = ""
    passes: tuple = PASSES
    tags: dict = field(default_factory=dict)
    # Memory-bound (an op that streams tensors): its roofline fraction is meaningful, and on CUDA
    # the L2 is flushed before each timed call. False for GEMM-bound ops and whole model steps.
    memory_bound: bool = True


_CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    if case.name in _CASES:
        raise ValueError(f"benchmark case {case.name!r} is registered twice")
    _CASES[case.name] = case
    return case


def cases() -> dict[str, Case]:
    """Every registered case (importing fastgen.bench.cases registers them)."""
    import fastgen.bench.cases  # noqa: F401

    return dict(_CASES)


def _cast_floats(out, dtype):
    if isinstance(out, torch.Tensor):
        return out.to(dtype) if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_cast_floats(o, dtype) for o in out)
    return out


def _under_autocast(fn: Callable, device_type: str, dtype: torch.dtype, out_dtype: torch.dtype) -> Callable:
    def run(*args):
        with torch.autocast(device_type, dtype=dtype):
            out = fn(*args)
        # Outputs back in the workload's dtype, so the same upstream gradients (and checks) apply.
        return _cast_floats(out, out_dtype)

    return run


AUTOCAST_TAG = "[bf16-autocast]"


def autocast_variant(
    case: Case, make: Callable[..., Workload] | None = None, dtype: torch.dtype = torch.bfloat16
) -> Case:
    """Register `<case.name>[bf16-autocast]`: the same workload with every contender (fastgen,
    eager, and so torch.compile of eager) run under torch.autocast(device, bfloat16), as mixed
    precision training runs it; parameters and inputs stay in the workload's dtype (float32).
    make: the workload to wrap, when not case.make's (e.g. one whose check allows for bfloat16
    rounding); make(shape, dtype, device=...)."""
    base = case.make if make is None else make

    def wrapped(shape, work_dtype, device="cpu"):
        work = base(shape, work_dtype) if device == "cpu" else base(shape, work_dtype, device=device)
        device_type = torch.device(device).type
        work.fastgen_fn = _under_autocast(work.fastgen_fn, device_type, dtype, work_dtype)
        work.eager_fn = _under_autocast(work.eager_fn, device_type, dtype, work_dtype)
        return work

    name = case.name + AUTOCAST_TAG if "[" not in case.name else case.name[:-1] + "," + AUTOCAST_TAG[1:]
    return register(
        Case(
            name=name,
            family=case.family,
            shapes=case.shapes,
            make=wrapped,
            description=case.description + "; under bfloat16 autocast",
            passes=case.passes,
            tags={**case.tags, "autocast": str(dtype).replace("torch.", "")},
            memory_bound=case.memory_bound,
        )
    )


def on_device(device, *tensors):
    """The tensors moved to `device` (cases build their inputs on the CPU from seeded generators,
    so every device sees the same values)."""
    return tuple(t.to(device) for t in tensors)


def nbytes(*tensors_or_sizes) -> int:
    total = 0
    for t in tensors_or_sizes:
        total += t.numel() * t.element_size() if isinstance(t, torch.Tensor) else int(t)
    return total


def loss_step(fast, twin, inputs: tuple, dtype, device) -> Workload:
    """A whole-model row whose models return their training loss from `.loss(*inputs)`: fastgen's
    model against its eager twin (torch.compile compiles the twin). Nominal byte floor: read the
    inputs and every parameter, write every gradient."""
    params = list(fast.parameters())
    data = nbytes(*[t for t in inputs if t.is_floating_point()])
    return Workload(
        inputs=inputs,
        fastgen_fn=lambda *xs: fast.loss(*xs),
        eager_fn=lambda *xs: twin.loss(*xs),
        grad_inputs=(),
        grad_outputs=lambda loss: (loss,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        min_bytes={"fwd": data + nbytes(*params), "fwd+bwd": data + 2 * nbytes(*params)},
        params={"fastgen": params, "eager": list(twin.parameters()), "compile": list(twin.parameters())},
    )


def elementwise(shape, dtype, device, n_inputs, fastgen_fn, eager_fn, upstream, min_tensors, scale=1.0) -> Workload:
    """A workload over n_inputs random tensors of `shape`, all differentiated; min_tensors:
    {pass: how many tensors of `shape` a fused implementation must read + write}."""
    gen = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(shape, generator=gen, dtype=dtype) * scale for _ in range(n_inputs))
    grad = torch.randn(shape, generator=gen, dtype=dtype) if upstream == "full" else torch.tensor(1.0, dtype=dtype)
    inputs, (grad,) = on_device(device, *inputs), on_device(device, grad)
    return Workload(
        inputs=inputs,
        fastgen_fn=fastgen_fn,
        eager_fn=eager_fn,
        grad_inputs=tuple(range(n_inputs)),
        grad_outputs=lambda out: (out,),
        upstream_grads=(grad,),
        min_bytes={k: n * nbytes(inputs[0]) for k, n in min_tensors.items()},
    )
