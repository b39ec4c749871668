"""GAN training core: the WGAN-GP interpolation and gradient penalty, pixel norm, and a whole
WGAN-GP critic step, fastgen vs the eager code a user writes."""
from __future__ import annotations

import contextlib
import functools

import torch

from fastgen import functional as F
from fastgen import models
from fastgen.bench.registry import Case, Workload, autocast_variant, nbytes, on_device, register
from fastgen.bench.shapes import GAN_IMAGES, PIXEL_NORM, WGAN_GP_STEP
from fastgen.reference import grad_penalty as reference
from fastgen.reference import models as eager_models
from fastgen.reference import pixel_norm as reference_pixel_norm


def _elementwise(shape, dtype, device, n_inputs, fastgen_fn, eager_fn, upstream, min_tensors, scale=1.0) -> Workload:
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


def _make_interpolate(shape, dtype, device="cpu") -> Workload:
    # alpha ~ U[0, 1) per sample is drawn on every call by both, as the WGAN-GP recipe does.
    # fwd reads real and fake, writes x_hat; bwd reads the gradient and writes two.
    return _elementwise(shape, dtype, device, 2, lambda r, f: F.interpolate(r, f), lambda r, f: reference.interpolate(r, f),
                        "full", {"fwd": 3, "fwd+bwd": 6})


def _make_penalty(shape, dtype, device="cpu") -> Workload:
    # fwd reads the gradients once; bwd reads them again and writes their gradient.
    return _elementwise(shape, dtype, device, 1, lambda g: F.grad_norm_penalty(g), lambda g: reference.grad_norm_penalty(g),
                        "scalar", {"fwd": 1, "fwd+bwd": 3}, scale=0.05)


def _make_pixel_norm(shape, dtype, device="cpu") -> Workload:
    # fwd reads x, writes y; bwd reads the gradient and x, writes grad_x.
    return _elementwise(shape, dtype, device, 1, lambda t: F.pixel_norm(t), lambda t: reference_pixel_norm.pixel_norm(t),
                        "full", {"fwd": 2, "fwd+bwd": 5})


def _make_critic_step(shape, dtype, device="cpu", autocast: bool = False) -> Workload:
    batch, channels, side, _ = shape
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fast = models.WGANGP(image_size=side, channels=channels).to(device, dtype)
        twin = eager_models.WGANGP(image_size=side, channels=channels).to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    real = torch.randn(shape, generator=gen, dtype=dtype)
    z = torch.randn(batch, fast.latent_dim, generator=gen, dtype=dtype)
    alpha = torch.rand(batch, generator=gen, dtype=dtype)
    real, z, alpha = on_device(device, real, z, alpha)
    # Eager's critic gradients, with and without the penalty, to check each contender against:
    # torch.compile runs this step without an error but returns the gradients *without* the
    # penalty (autograd.grad(create_graph=True) graph-breaks, and the compiled critic's backward is
    # not differentiated again), which is reported as its failure rather than timed.
    # Under bfloat16 autocast (the [bf16-autocast] variant) eager's gradients are taken under
    # autocast too, and compared at bfloat16's resolution.
    critic_params = list(twin.critic.parameters())
    mixed = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if autocast
             else contextlib.nullcontext())
    with mixed:
        want = torch.autograd.grad(twin.critic_loss(real, z, alpha=alpha), critic_params)
        fake = twin.generator(z).detach()
        without_penalty = torch.autograd.grad(twin.critic(fake).mean() - twin.critic(real).mean(), critic_params)
    tolerance = 3e-2 if autocast else 1e-3

    def check(impl, pass_name, grads):
        scale = max(w.abs().max().item() for w in want)
        error = max((g - w).abs().max().item() for g, w in zip(grads, want))
        if error <= tolerance * scale:
            return None
        if max((g - w).abs().max().item() for g, w in zip(grads, without_penalty)) <= tolerance * scale:
            return ("its critic gradients are those without the gradient penalty (the penalty's double backward "
                    "is silently dropped at the autograd.grad(create_graph=True) graph break)")
        return f"critic gradients differ from eager's by {error:.2g} (eager's are up to {scale:.2g})"

    return Workload(
        inputs=(real, z, alpha),
        fastgen_fn=lambda r, zz, a: fast.critic_loss(r, zz, alpha=a),
        eager_fn=lambda r, zz, a: twin.critic_loss(r, zz, alpha=a),
        grad_inputs=(),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        # The step is compute-bound (convolutions); the roofline counts the images only.
        min_bytes={"fwd+bwd": nbytes(real)},
        params={"fastgen": list(fast.critic.parameters()), "eager": list(twin.critic.parameters()),
                "compile": list(twin.critic.parameters())},
        check=check,
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
autocast_variant(register(Case(
    name="wgan_gp_critic_step",
    family="gan",
    shapes=WGAN_GP_STEP,
    make=_make_critic_step,
    description="WGAN-GP critic loss + gradient penalty (DCGAN-style critic), backward to the critic's weights",
    passes=("fwd+bwd",),
    memory_bound=False,
)), make=functools.partial(_make_critic_step, autocast=True))
