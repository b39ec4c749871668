"""Whole-model training steps: each fastgen model against its eager twin (fastgen.reference.models)
with the twin's torch.compile in the same run. These rows are compute-bound (convolutions and
matmuls); they show what the fused ops give a real step, not a kernel's roofline."""
from __future__ import annotations

import contextlib
import functools

import torch

from fastgen import models
from fastgen.bench.registry import Case, Workload, autocast_variant, loss_step, nbytes, on_device, register
from fastgen.bench.shapes import (ARCFACE_STEP, CYCLEGAN_GENERATOR, PIX2PIX_GENERATOR, REALNVP_STEP, SRRESNET_TRAIN,
                                  VAE_STEP, WGAN_GP_STEP)
from fastgen.reference import models as eager_models


def _make_vae_step(shape, dtype, device="cpu") -> Workload:
    batch, features = shape
    torch.manual_seed(0)
    fast = models.VAE(in_features=features).to(device, dtype)
    twin = eager_models.VAE(in_features=features).to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch, features, generator=gen) < 0.3).to(dtype)  # binarized-MNIST-like targets for BCE
    # eps drawn inside: fastgen's in-kernel Philox vs the twin's torch.randn_like.
    return loss_step(fast, twin, on_device(device, x), dtype, device)


autocast_variant(register(Case(
    name="vae_step",
    family="models",
    shapes=VAE_STEP,
    make=_make_vae_step,
    description="MLP VAE (784-400-20, Bernoulli decoder) negative-ELBO training step vs its eager twin; shape (B, 784)",
    passes=("fwd+bwd",),
    memory_bound=False,
)))


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
    fast, twin = fast.to(device), twin.to(device)
    x, noise = on_device(device, x, noise)
    param_bytes = sum(nbytes(p) for p in fast.parameters())
    return Workload(
        inputs=(x,),
        fastgen_fn=lambda x: fast.loss(x, noise),
        eager_fn=lambda x: twin.loss(x, noise),
        grad_inputs=(),
        grad_outputs=lambda loss: (loss,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        # Not a memory-bound op: the bytes are the data and the parameters (read, and written as
        # gradients), for reference only.
        min_bytes={"fwd": 2 * nbytes(x) + param_bytes, "fwd+bwd": 2 * nbytes(x) + 2 * param_bytes},
        params={"fastgen": list(fast.parameters()), "eager": list(twin.parameters()),
                "compile": list(twin.parameters())},
    )


autocast_variant(register(Case(
    name="realnvp_step",
    family="models",
    shapes=REALNVP_STEP,
    make=_make_realnvp_step,
    description="RealNVP loss (mean bits/dim) fwd and training step vs the eager twin; "
                "1x28x28: RealNVP.small(), 3x32x32: the CIFAR-10 model",
    memory_bound=False,
)))


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


autocast_variant(register(Case(
    name="wgan_gp_critic_step",
    family="models",
    shapes=WGAN_GP_STEP,
    make=_make_critic_step,
    description="WGAN-GP critic loss + gradient penalty (DCGAN-style critic), backward to the critic's weights",
    passes=("fwd+bwd",),
    memory_bound=False,
)), make=functools.partial(_make_critic_step, autocast=True))


def _generator_step(shape, dtype, device, fast_cls, twin_cls, **kwargs) -> Workload:
    torch.manual_seed(0)
    fast = fast_cls(**kwargs).to(device, dtype)
    twin = twin_cls(**kwargs).to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    target = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    x, target = on_device(device, x, target)

    def step_of(model):
        # The generator's reconstruction term (L1 to a target); backward gives every parameter's gradient.
        return lambda x, target: (model(x) - target).abs().mean()

    params = sum(nbytes(p) for p in fast.parameters())
    return Workload(
        inputs=(x, target), fastgen_fn=step_of(fast), eager_fn=step_of(twin), grad_inputs=(),
        grad_outputs=lambda out: (out,), upstream_grads=(torch.ones((), dtype=dtype, device=device),),
        # A loose floor: parameters read (and their gradients written), images in and out.
        min_bytes={"fwd": params + 3 * nbytes(x), "fwd+bwd": 3 * params + 4 * nbytes(x)},
        params={"fastgen": list(fast.parameters()), "eager": list(twin.parameters()),
                "compile": list(twin.parameters())},
    )


autocast_variant(register(Case(
    name="cyclegan_generator[train]",
    family="models",
    shapes=CYCLEGAN_GENERATOR,
    make=lambda shape, dtype, device="cpu": _generator_step(shape, dtype, device, models.ResnetGenerator,
                                                            eager_models.ResnetGenerator),
    description="CycleGAN ResnetGenerator (ngf=64, 9 blocks) forward + backward vs its eager twin",
    passes=("fwd+bwd",),
    memory_bound=False,
)))
autocast_variant(register(Case(
    name="pix2pix_generator[train]",
    family="models",
    shapes=PIX2PIX_GENERATOR,
    # unet_256 for 256x256 images, unet_128 for 128x128: down to 1x1 at the bottleneck.
    make=lambda shape, dtype, device="cpu": _generator_step(shape, dtype, device, models.UnetGenerator,
                                                            eager_models.UnetGenerator,
                                                            num_downs=min(shape[2:]).bit_length() - 1),
    description="pix2pix UnetGenerator (unet_256 / unet_128, instance norm) forward + backward vs its eager twin",
    passes=("fwd+bwd",),
    memory_bound=False,
)))


def _make_srresnet_step(shape, dtype, device="cpu") -> Workload:
    torch.manual_seed(0)
    fast = models.SRResNet().to(device, dtype)
    twin = eager_models.SRResNet().to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    n, c, h, w = shape
    lr = torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1
    hr = torch.rand((n, c, 4 * h, 4 * w), generator=gen, dtype=dtype) * 2 - 1
    lr, hr = on_device(device, lr, hr)
    params = list(fast.parameters())
    # Nominal floor: read the inputs and every parameter, write every gradient.
    floor = nbytes(lr, hr) + 2 * nbytes(*params)
    return Workload(
        inputs=(lr, hr),
        fastgen_fn=lambda lr, hr: fast.loss(lr, hr),
        eager_fn=lambda lr, hr: twin.loss(lr, hr),
        grad_inputs=(),
        grad_outputs=lambda loss: (loss,),
        upstream_grads=(torch.tensor(1.0, dtype=dtype, device=device),),
        min_bytes={"fwd": floor, "fwd+bwd": floor},
        params={"fastgen": params, "eager": list(twin.parameters()), "compile": list(twin.parameters())},
    )


autocast_variant(register(Case(
    name="srresnet_train",
    family="models",
    shapes=SRRESNET_TRAIN,
    make=_make_srresnet_step,
    description="SRResNet (64 ch, 16 blocks, x4) training step, MSE loss, vs its eager twin; shape = the LR batch",
    passes=("fwd+bwd",),
    memory_bound=False,
)))


def _make_arcface_step(shape, dtype, device="cpu") -> Workload:
    batch, classes = shape
    torch.manual_seed(0)
    kwargs = dict(num_classes=classes, in_channels=3, image_size=32, embedding_size=512)
    fast = models.ArcFaceNet(**kwargs).to(device, dtype)
    twin = eager_models.ArcFaceNet(**kwargs).to(device, dtype)
    twin.load_state_dict(fast.state_dict())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen, dtype=dtype)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    return loss_step(fast, twin, on_device(device, x, labels), dtype, device)


autocast_variant(register(Case(
    name="arcface_step",
    family="models",
    shapes=ARCFACE_STEP,
    make=_make_arcface_step,
    description="ArcFaceNet (conv encoder, 512-d embedding, ArcFace head) training step vs its eager twin; "
                "shape (B, classes), 3x32x32 images",
    passes=("fwd+bwd",),
    memory_bound=False,
)))
