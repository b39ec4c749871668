"""Double backward for ops whose first backward is a fused kernel: differentiate a torch-op
formulation of the op twice (shared by the loss families, e.g. fastgen/ops/margin_softmax.py
and fastgen/ops/triplet.py, whose forward math is too branchy for a hand-written Hessian).

The backward op computed grads = VJP(f)(primals; cotangents). Its own VJP, given the
incoming gradients gg of those grads, is d<VJP(f)(primals; cotangents), gg> with respect to
the cotangents and the primals, which autograd gives when f is written in torch ops. With
create_graph the result stays differentiable (third order and up).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def _as_input(t: torch.Tensor | None, create_graph: bool):
    """`t` itself when the graph must reach through it, else a fresh leaf that requires grad."""
    if t is None:
        return None
    if create_graph and t.requires_grad:
        return t
    return t.detach().requires_grad_(t.dtype.is_floating_point)


def vjp_of_vjp(
    forward: Callable[..., Sequence[torch.Tensor]],
    primals: Sequence[torch.Tensor | None],
    cotangents: Sequence[torch.Tensor | None],
    gg: Sequence[torch.Tensor | None],
    *,
    differentiable: Sequence[bool] | None = None,
) -> tuple[list, list]:
    """(gradients w.r.t. cotangents, gradients w.r.t. primals) of sum_i <grad_i, gg[i]>, where
    grad_i = d(sum_j <forward(*primals)[j], cotangents[j]>)/d(primals[i]).

    forward(*primals) returns one output per cotangent. `differentiable[i]` false marks a
    primal that is not differentiated (integer labels, ...); gg has one entry per primal
    (None or ignored where not differentiable). Entries are None where nothing flows.
    """
    create_graph = torch.is_grad_enabled()
    if differentiable is None:
        differentiable = [p is not None and p.dtype.is_floating_point for p in primals]
    with torch.enable_grad():
        ins = [(_as_input(p, create_graph) if d else p) for p, d in zip(primals, differentiable)]
        cots = [_as_input(c, create_graph) for c in cotangents]
        outs = forward(*ins)
        pairs = [(o, c) for o, c in zip(outs, cots) if c is not None]
        wrt = [i for i, d in enumerate(differentiable) if d]
        first = torch.autograd.grad([o for o, _ in pairs], [ins[i] for i in wrt], [c.to(o.dtype) for o, c in pairs],
                                    create_graph=True, allow_unused=True)
        terms = [(f, gg[i]) for f, i in zip(first, wrt) if f is not None and gg[i] is not None and gg[i].numel()]
        targets = [c for c in cots if c is not None] + [ins[i] for i in wrt]
        if terms:
            second = torch.autograd.grad([f for f, _ in terms], targets, [g.to(f.dtype) for f, g in terms],
                                         create_graph=create_graph, allow_unused=True)
        else:
            second = [None] * len(targets)
    second = list(second)
    d_cots = [None if c is None else second.pop(0) for c in cots]
    d_primals: list = [None] * len(primals)
    for i in wrt:
        d_primals[i] = second.pop(0)
    for k, c in enumerate(cotangents):
        if d_cots[k] is not None and c is not None:
            d_cots[k] = d_cots[k].to(c.dtype)
    for i in wrt:
        if d_primals[i] is not None:
            d_primals[i] = d_primals[i].to(primals[i].dtype)
    return d_cots, d_primals
