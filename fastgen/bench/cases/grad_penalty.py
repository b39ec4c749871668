"""The WGAN-GP interpolation and gradient penalty: fastgen vs the eager code a user writes."""

from __future__ import annotations

from fastgen import functional as F
from fastgen.bench.registry import Case, Workload, elementwise, register
from fastgen.bench.shapes import GAN_IMAGES
from fastgen.reference import grad_penalty as reference


def _make_interpolate(shape, dtype, device="cpu") -> Workload:
    # alpha ~ U[0, 1) per sample is drawn on every call by both, as the WGAN-GP recipe does.
    # fwd reads real and fake, writes x_hat; bwd reads the gradient and writes two.
    return elementwise(
        shape,
        dtype,
        device,
        2,
        lambda r, f: F.interpolate(r, f),
        lambda r, f: reference.interpolate(r, f),
        "full",
        {"fwd": 3, "fwd+bwd": 6},
    )


def _make_penalty(shape, dtype, device="cpu") -> Workload:
    # fwd reads the gradients once; bwd reads them again and writes their gradient.
    return elementwise(
        shape,
        dtype,
        device,
        1,
        lambda g: F.grad_norm_penalty(g),
        lambda g: reference.grad_norm_penalty(g),
        "scalar",
        {"fwd": 1, "fwd+bwd": 3},
        scale=0.05,
    )


register(
    Case(
        name="interpolate",
        family="grad_penalty",
        shapes=GAN_IMAGES,
        make=_make_interpolate,
        description="WGAN-GP x_hat = alpha real + (1 - alpha) fake, alpha drawn per sample",
    )
)
register(
    Case(
        name="grad_penalty",
        family="grad_penalty",
        shapes=GAN_IMAGES,
        make=_make_penalty,
        description="WGAN-GP penalty 10 * mean((||g||_2 - 1)^2) on given critic-input gradients",
    )
)
