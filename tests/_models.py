"""Helpers for the model-vs-eager-twin tests.

Every comparison follows the project's parity rule (tests/_tolerance.py): the fastgen model's
error against a float64 run of the eager twin is at most about twice the float32 twin's own
error against that run, plus a floor scaled to the tensor. Nothing is tuned to one CPU: two
machines may round the same float32 convolution differently, but each side's error is measured
on the machine the test runs on.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from tests._tolerance import assert_parity


class _OpRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.namespaces: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.namespaces.add(func.namespace)
        return func(*args, **(kwargs or {}))


def op_namespaces(fn) -> set[str]:
    """The op namespaces (aten, fastgen, ...) that fn() dispatches, forward and backward."""
    recorder = _OpRecorder()
    with recorder:
        fn()
    return recorder.namespaces


def twin_pair(fast_cls, twin_cls, *args, **kwargs):
    """A fastgen model and its eager twin holding the same parameters."""
    fast = fast_cls(*args, **kwargs)
    twin = twin_cls(*args, **kwargs)
    fast_keys = {k: tuple(v.shape) for k, v in fast.state_dict().items()}
    twin_keys = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    assert fast_keys == twin_keys, "state_dict keys or shapes differ between model and eager twin"
    twin.load_state_dict(fast.state_dict())
    return fast, twin


def _to_float64(value):
    if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
        return value.double()
    return value


class Float64(TorchFunctionMode):
    """Runs the same Python code in float64: every float32 tensor that reaches or leaves a torch
    function (inputs the test built, random draws, a model's explicit .float()) becomes float64.
    Random draws keep their float32 values, so both runs see the same inputs."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        args, kwargs = tree_map(_to_float64, (args, kwargs or {}))
        return tree_map(_to_float64, func(*args, **kwargs))


def float64_twin(twin: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of the eager twin: the reference both float32 models are measured against."""
    return copy.deepcopy(twin).double()


@contextlib.contextmanager
def same_random_draws(state: torch.Tensor):
    """Every run starts from the same RNG state (dropout masks, sampled noise)."""
    torch.set_rng_state(state)
    yield


def assert_tensors_match(fast, eager, ref64, what: str, *, scale: float | None = None) -> None:
    """fast and eager are float32 results of the same computation, ref64 its float64 run."""
    assert_parity(fast.detach(), eager.detach(), ref64.detach(), what=what, scale=scale)


def gradient_scale(named_ref_grads: dict[str, torch.Tensor]) -> float:
    """The scale parameter gradients are compared at: the network's largest gradient. A
    parameter's gradient is a sum of contributions of the network's gradient scale, and its
    rounding is relative to them, not to what is left after they cancel: a bias summed over
    many positions can come out 30 ulps of itself away from float64 in one summation order and
    1 ulp in another, and a conv bias right before an affine-free instance norm has an exactly
    zero true gradient, so both sides return pure rounding noise there."""
    return max((g.abs().max().item() for g in named_ref_grads.values() if g.numel()), default=1.0)


def assert_training_step_matches(fast, twin, loss_of, *, lr=0.1):
    """One SGD step on each: the losses, every parameter's gradient and the updated parameters
    match under the parity rule, against the same step of the twin in float64."""
    ref = float64_twin(twin)
    rng = torch.get_rng_state()
    with same_random_draws(rng):
        fast_loss = loss_of(fast)
    with same_random_draws(rng):
        twin_loss = loss_of(twin)
    with same_random_draws(rng), Float64():
        ref_loss = loss_of(ref)
    for loss in (fast_loss, twin_loss, ref_loss):
        loss.backward()
    assert_tensors_match(fast_loss, twin_loss, ref_loss, "loss")

    fast_params, twin_params, ref_params = (
        {n: p for n, p in m.named_parameters() if p.requires_grad} for m in (fast, twin, ref)
    )
    assert fast_params.keys() == twin_params.keys() == ref_params.keys()
    for name in fast_params:
        assert fast_params[name].grad is not None and twin_params[name].grad is not None, f"{name}: no gradient"
    scale = gradient_scale({name: p.grad for name, p in ref_params.items()})
    for name, p in fast_params.items():
        assert_tensors_match(
            p.grad, twin_params[name].grad, ref_params[name].grad, f"grad of {name}", scale=max(scale, 1.0)
        )
    with torch.no_grad():
        for params in (fast_params, twin_params, ref_params):
            for p in params.values():
                p -= lr * p.grad
    for name, p in fast_params.items():
        assert_tensors_match(p, twin_params[name], ref_params[name], f"updated {name}")
    return copy.deepcopy(fast_loss.detach())


def assert_matches_eager(fast_out, eager_fn, what: str = "output") -> None:
    """fast_out (a tensor or a tuple of them) against eager_fn() in float32 and, as the reference,
    eager_fn() run in float64 (its float32 parameters and inputs upcast on use)."""
    rng = torch.get_rng_state()
    with same_random_draws(rng):
        eager_out = eager_fn()
    with same_random_draws(rng), Float64():
        ref_out = eager_fn()
    fast_flat, eager_flat, ref_flat = (torch.utils._pytree.tree_leaves(o) for o in (fast_out, eager_out, ref_out))
    assert len(fast_flat) == len(eager_flat) == len(ref_flat), f"{what}: different number of outputs"
    for i, (f, e, r) in enumerate(zip(fast_flat, eager_flat, ref_flat)):
        assert_tensors_match(f, e, r, f"{what}[{i}]" if len(fast_flat) > 1 else what)
