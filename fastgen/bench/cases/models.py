"""Whole-model training steps: each fastgen model against its eager twin (fastgen.reference.models)
with the twin's torch.compile in the same run. These rows are compute-bound (convolutions and
matmuls); they show what the fused ops give a real step, not a kernel's roofline."""

from __future__ import annotations

import contextlib
import functools

import torch

from fastgen import models
from fastgen.bench.registry import Case, Workload, autocast_variant, loss_step, nbytes, on_device, register
from fastgen.bench.shapes import (
    ARCFACE_STEP,
    CYCLEGAN_GENERATOR,
    PIX2PIX_GENERATOR,
    REALNVP_STEP,
    SRRESNET_TRAIN,
    VAE_STEP,
    WGAN_GP_STEP,
)
from fastgen.reference import models as eager_models


def _twins(name: str, device, dtype, **kwargs):
    """fastgen's model `name` and its eager twin with the same weights (drawn from seed 0 without
    disturbing the caller's random state), on `device` in `dtype`."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fast = getattr(models, name)(**kwargs).to(device, dtype)
        twin = getattr(eager_models, name)(**kwargs).to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    return fast, twin


def _register(name: str, shapes: dict, make, description: str, *, passes=("fwd+bwd",), autocast_make=None) -> None:
    """A whole-model row (compute-bound) and its bfloat16-autocast twin row."""
    autocast_variant(
        register(
            Case(
                name=name,
                family="models",
                shapes=shapes,
                make=make,
                description=description,
                passes=passes,
                memory_bound=False,
            )
        ),
        make=autocast_make,
    )


def _make_vae_step(shape, dtype, device="cpu") -> Workload:
    batch, features = shape
    fast, twin = _twins("VAE", device, dtype, in_features=features)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, features, generator=gen) < 0.3).to(dtype)  # binarized-MNIST-like targets for BCE
    # eps drawn inside: fastgen's in-kernel Philox vs the twin's torch.randn_like.
    return loss_step(fast, twin, on_device(device, x), dtype, device)


_register(
    "vae_step",
    VAE_STEP,
    _make_vae_step,
    "MLP VAE (784-400-20, Bernoulli decoder) negative-ELBO training step vs its eager twin; shape (B, 784)",
)


def _make_realnvp_step(shape, dtype, device="cpu") -> Workload:
    batch, channels, size, _ = shape
    torch.manual_seed(0)
    if (channels, size) == (3, 32):
        kwargs = {}  # the paper's CIFAR-10 model: 64 channels, 8 residual blocks, 2 scales
        fast, twin = models.RealNVP(**kwargs), eager_models.RealNVP(**kwargs)
    else:
        fast, twin = models.RealNVP.small(channels, size), eager_models.RealNVP.small(channels, size)
    fast, twin = fast.to(dtype), twin.to(dtype)
    with torch.no_grad():  # the scales start at zero; give them values so every path is exercised
        for name, p in fast.named_parameters():
            if name.endswith("scale"):
                p.copy_(0.5 * torch.randn(p.shape, dtype=dtype))
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, shape, generator=gen).to(dtype) / 255
    noise = torch.rand(shape, generator=gen, dtype=dtype)
    return loss_step(fast.to(device), twin.to(device), on_device(device, x, noise), dtype, device)


_register(
    "realnvp_step",
    REALNVP_STEP,
    _make_realnvp_step,
    "RealNVP loss (mean bits/dim) fwd and training step vs the eager twin; "
    "1x28x28: RealNVP.small(), 3x32x32: the CIFAR-10 model",
    passes=("fwd", "fwd+bwd"),
)


def _make_critic_step(shape, dtype, device="cpu", autocast: bool = False) -> Workload:
    batch, channels, side, _ = shape
    fast, twin = _twins("WGANGP", device, dtype, image_size=side, channels=channels)
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
    mixed = torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
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
            return (
                "its critic gradients are those without the gradient penalty (the penalty's double backward "
                "is silently dropped at the autograd.grad(create_graph=True) graph break)"
            )
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
        params={
            "fastgen": list(fast.critic.parameters()),
            "eager": list(twin.critic.parameters()),
            "compile": list(twin.critic.parameters()),
        },
        check=check,
    )


_register(
    "wgan_gp_critic_step",
    WGAN_GP_STEP,
    _make_critic_step,
    "WGAN-GP critic loss + gradient penalty (DCGAN-style critic), backward to the critic's weights",
    autocast_make=functools.partial(_make_critic_step, autocast=True),
)


def _generator_step(shape, dtype, device, name, **kwargs) -> Workload:
    fast, twin = _twins(name, device, dtype, **kwargs)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    target = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    x, target = on_device(device, x, target)

    def step_of(model):
        # The generator's reconstruction term (L1 to a target); backward gives every parameter's gradient.
        return lambda x, target: (model(x) - target).abs().mean()

    params = sum(nbytes(p) for p in fast.parameters())
    return Workload(
        inputs=(x, target),
        fastgen_fn=step_of(fast),
        eager_fn=step_of(twin),
        grad_inputs=(),
        grad_outputs=lambda out: (out,),
        upstream_grads=(torch.ones((), dtype=dtype, device=device),),
        # A loose floor: parameters read (and their gradients written), images in and out.
        min_bytes={"fwd": params + 3 * nbytes(x), "fwd+bwd": 3 * params + 4 * nbytes(x)},
        params={
            "fastgen": list(fast.parameters()),
            "eager": list(twin.parameters()),
            "compile": list(twin.parameters()),
        },
    )


_register(
    "cyclegan_generator[train]",
    CYCLEGAN_GENERATOR,
    lambda shape, dtype, device="cpu": _generator_step(shape, dtype, device, "ResnetGenerator"),
    "CycleGAN ResnetGenerator (ngf=64, 9 blocks) forward + backward vs its eager twin",
)
# unet_256 for 256x256 images, unet_128 for 128x128: down to 1x1 at the bottleneck.
_register(
    "pix2pix_generator[train]",
    PIX2PIX_GENERATOR,
    lambda shape, dtype, device="cpu": _generator_step(
        shape, dtype, device, "UnetGenerator", num_downs=min(shape[2:]).bit_length() - 1
    ),
    "pix2pix UnetGenerator (unet_256 / unet_128, instance norm) forward + backward vs its eager twin",
)


def _make_srresnet_step(shape, dtype, device="cpu") -> Workload:
    fast, twin = _twins("SRResNet", device, dtype)
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    lr = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    hr = torch.rand((n, c, 4 * h, 4 * w), generator=gen, dtype=dtype) * 2 - 1
    return loss_step(fast, twin, on_device(device, lr, hr), dtype, device)


_register(
    "srresnet_train",
    SRRESNET_TRAIN,
    _make_srresnet_step,
    "SRResNet (64 ch, 16 blocks, x4) training step, MSE loss, vs its eager twin; shape = the LR batch",
)


def _make_arcface_step(shape, dtype, device="cpu") -> Workload:
    batch, classes = shape
    fast, twin = _twins(
        "ArcFaceNet", device, dtype, num_classes=classes, in_channels=3, image_size=32, embedding_size=512
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen, dtype=dtype)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    return loss_step(fast, twin, on_device(device, x, labels), dtype, device)


_register(
    "arcface_step",
    ARCFACE_STEP,
    _make_arcface_step,
    "ArcFaceNet (conv encoder, 512-d embedding, ArcFace head) training step vs its eager twin; "
    "shape (B, classes), 3x32x32 images",
)
