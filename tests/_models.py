"""Helpers for the model-vs-eager-twin tests."""
from __future__ import annotations

import copy

import torch
from torch.utils._python_dispatch import TorchDispatchMode


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


def assert_training_step_matches(fast, twin, loss_of, *, rtol=1e-5, atol=1e-6, lr=0.1):
    """One SGD step on each: the losses, every parameter's gradient and the updated
    parameters match."""
    fast_loss = loss_of(fast)
    twin_loss = loss_of(twin)
    fast_loss.backward()
    twin_loss.backward()
    torch.testing.assert_close(fast_loss, twin_loss, rtol=rtol, atol=atol)
    twin_params = dict(twin.named_parameters())
    assert twin_params.keys() == dict(fast.named_parameters()).keys()
    for name, p in fast.named_parameters():
        q = twin_params[name]
        assert p.grad is not None and q.grad is not None, f"{name}: no gradient"
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol, msg=lambda m: f"grad of {name}: {m}")
    for model in (fast, twin):
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p, twin_params[name], rtol=rtol, atol=atol)
    return copy.deepcopy(fast_loss.detach())
