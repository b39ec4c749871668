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
    make: Callable[[tuple, torch.dtype], Workload]
    description: str = ""
    passes: tuple = PASSES
    tags: dict = field(default_factory=dict)


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


def nbytes(*tensors_or_sizes) -> int:
    total = 0
    for t in tensors_or_sizes:
        total += t.numel() * t.element_size() if isinstance(t, torch.Tensor) else int(t)
    return total
