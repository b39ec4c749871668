"""RealNVP affine coupling: fastgen's fused op vs the eager code a user writes (split,
x_b * exp(s) + t, cat, sum(s)), forward and inverse."""

from __future__ import annotations

import types

import torch

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, nbytes, on_device, register
from fastgen.bench.shapes import COUPLING_CHANNEL, COUPLING_CHECKERBOARD
from fastgen.reference import coupling as reference


def _own_code(fn, name: str):
    """fn with a code object of its own. torch.compile caches graphs per code object (at most
    recompile_limit = 8 of them); every case's eager lambda would otherwise share one code
    object, and the later cases would silently run uncompiled."""
    return types.FunctionType(fn.__code__.replace(co_name=name), fn.__globals__, name, fn.__defaults__, fn.__closure__)


def _make(shape, dtype, device="cpu", *, mask: str, inverse: bool) -> Workload:
    gen = torch.Generator().manual_seed(0)
    s_shape = (shape[0], shape[1] // 2, *shape[2:]) if mask == "channel" else shape
    x = torch.randn(shape, generator=gen, dtype=dtype)
    s = 0.1 * torch.randn(s_shape, generator=gen, dtype=dtype)
    t = torch.randn(s_shape, generator=gen, dtype=dtype)
    grad_y = torch.randn(shape, generator=gen, dtype=dtype)
    grad_logdet = torch.randn(shape[0], generator=gen, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    x, s, t, grad_y, grad_logdet = on_device(device, x, s, t, grad_y, grad_logdet)
    X, S, L = nbytes(x), nbytes(s), nbytes(grad_logdet)
    # fwd reads x, s, t and writes y and logdet; bwd reads grad_y, grad_logdet, the transformed
    # part of x (of the output, for the inverse) and s, and writes grad_x, grad_s, grad_t.
    # Going forward with the channel mask, grad_t is grad_y's transformed half (a view, no bytes).
    x_part = S if mask == "channel" else X
    grad_t = 0 if (mask == "channel" and not inverse) else S
    min_bytes = {"fwd": 2 * X + 2 * S + L}
    min_bytes["fwd+bwd"] = min_bytes["fwd"] + 2 * X + L + x_part + 2 * S + grad_t
    tag = f"eager_coupling_{mask}_{'inverse' if inverse else 'forward'}_{'x'.join(map(str, shape))}"
    return Workload(
        inputs=(x, s, t),
        fastgen_fn=lambda x, s, t: F.affine_coupling(x, s, t, mask=mask, inverse=inverse),
        eager_fn=_own_code(lambda x, s, t: reference.affine_coupling(x, s, t, mask=mask, inverse=inverse), tag),
        grad_inputs=(0, 1, 2),
        grad_outputs=lambda out: out,
        upstream_grads=(grad_y, grad_logdet),
        min_bytes=min_bytes,
    )


for _mask, _shapes in (("channel", COUPLING_CHANNEL), ("checkerboard", COUPLING_CHECKERBOARD)):
    for _inverse in (False, True):
        register(
            Case(
                name=f"coupling[{_mask}{',inverse' if _inverse else ''}]",
                family="coupling",
                shapes=_shapes,
                make=lambda shape, dtype, device="cpu", mask=_mask, inverse=_inverse: _make(
                    shape, dtype, device, mask=mask, inverse=inverse
                ),
                description=f"RealNVP affine coupling + log-det, {_mask} mask, {'inverse' if _inverse else 'forward'}",
            )
        )
