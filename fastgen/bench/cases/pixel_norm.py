"""ProGAN pixel norm: fastgen's fused op vs the eager code a user writes."""

from __future__ import annotations

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, elementwise, register
from fastgen.bench.shapes import PIXEL_NORM
from fastgen.reference import pixel_norm as reference


def _make_pixel_norm(shape, dtype, device="cpu") -> Workload:
    # fwd reads x, writes y; bwd reads the gradient and x, writes grad_x.
    return elementwise(
        shape,
        dtype,
        device,
        1,
        lambda t: F.pixel_norm(t),
        lambda t: reference.pixel_norm(t),
        "full",
        {"fwd": 2, "fwd+bwd": 5},
    )


register(
    Case(
        name="pixel_norm",
        family="pixel_norm",
        shapes=PIXEL_NORM,
        make=_make_pixel_norm,
        description="ProGAN pixel norm x * rsqrt(mean_c x^2 + 1e-8)",
    )
)
