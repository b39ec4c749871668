"""GAN training core: the WGAN-GP interpolation and gradient penalty, pixel norm, and a whole
WGAN-GP critic step, fastgen vs the eager code a user writes."""
from __future__ import annotations

import torch

from fastgen import functional as F
from fastgen import models
from fastgen.bench.registry import Case, Workload, nbytes, register
from fastgen.bench.shapes import GAN_IMAGES, PIXEL_NORM, WGAN_GP_STEP
from fastgen.reference import grad_penalty as reference
from fastgen.reference import models as eager_models
from fastgen.reference import pixel_norm as reference_pixel_norm


def _make_interpolate(shape, dtype) -> Workload:
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(shape, generator=gen, dtype=dtype)
    fake = torch.randn(shape, generator=gen, dtype=dtype)
    grad = torch.randn(shape, generator=gen, dtype=dtype)
    one = nbytes(real)
    return Workload(
        inputs=(real, fake),
        # alpha ~ U[0, 1) per sample is drawn on every call by both, as the WGAN-GP recipe does.
        fastgen_fn=lambda r, f: F.interpolate(r, f),
        eager_fn=lambda r, f: reference.interpolate(r, f),
        grad_inputs=(0, 1),
        grad_outputs=lambda out: (out,),
        upstream_grads=(grad,),
        # fwd reads real and fake, writes x_hat; bwd reads the gradient and writes two.
        min_bytes={"fwd": 3 * one, "fwd+bwd": 6 * one},
    )


def _make_penalty(shape, dtype) -> Workload:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(shape, generator=gen, dtype=dtype) * 0.05
    one = nbytes(grads)
    return Workload(
        inputs=(grads,),
        fastgen_fn=lambda g: F.grad_norm_penalty(g),
        eager_fn=lambda g: reference.grad_norm_penalty(g),
        grad_inputs=(0,),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype),),
        # fwd reads the gradients once; bwd reads them again and writes their gradient.
        min_bytes={"fwd": one, "fwd+bwd": 3 * one},
    )


def _make_pixel_norm(shape, dtype) -> Workload:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    grad = torch.randn(shape, generator=gen, dtype=dtype)
    one = nbytes(x)
    return Workload(
        inputs=(x,),
        fastgen_fn=lambda t: F.pixel_norm(t),
        eager_fn=lambda t: reference_pixel_norm.pixel_norm(t),
        grad_inputs=(0,),
        grad_outputs=lambda out: (out,),
        upstream_grads=(grad,),
        # fwd reads x, writes y; bwd reads the gradient and x, writes grad_x.
        min_bytes={"fwd": 2 * one, "fwd+bwd": 5 * one},
    )


def _make_critic_step(shape, dtype) -> Workload:
    batch, channels, side, _ = shape
    torch.manual_seed(0)
    fast = models.WGANGP(image_size=side, channels=channels).to(dtype)
    twin = eager_models.WGANGP(image_size=side, channels=channels).to(dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(shape, generator=gen, dtype=dtype)
    z = torch.randn(batch, fast.latent_dim, generator=gen, dtype=dtype)
    alpha = torch.rand(batch, generator=gen, dtype=dtype)
    return Workload(
        inputs=(real, z, alpha),
        fastgen_fn=lambda r, zz, a: fast.critic_loss(r, zz, alpha=a),
        eager_fn=lambda r, zz, a: twin.critic_loss(r, zz, alpha=a),
        grad_inputs=(),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype),),
        # The step is compute-bound (convolutions); the roofline counts the images only.
        min_bytes={"fwd+bwd": nbytes(real)},
        params={"fastgen": list(fast.critic.parameters()), "eager": list(twin.critic.parameters()),
                "compile": list(twin.critic.parameters())},
    )


register(Case(
    name="interpolate",
    family="gan",
    shapes=GAN_IMAGES,
    make=_make_interpolate,
    description="WGAN-GP x_hat = alpha real + (1 - alpha) fake, alpha drawn per sample",
))
register(Case(
    name="grad_penalty",
    family="gan",
    shapes=GAN_IMAGES,
    make=_make_penalty,
    description="WGAN-GP penalty 10 * mean((||g||_2 - 1)^2) on given critic-input gradients",
))
register(Case(
    name="pixel_norm",
    family="gan",
    shapes=PIXEL_NORM,
    make=_make_pixel_norm,
    description="ProGAN pixel norm x * rsqrt(mean_c x^2 + 1e-8)",
))
register(Case(
    name="wgan_gp_critic_step",
    family="gan",
    shapes=WGAN_GP_STEP,
    make=_make_critic_step,
    description="WGAN-GP critic loss + gradient penalty (DCGAN-style critic), backward to the critic's weights",
    passes=("fwd+bwd",),
))
