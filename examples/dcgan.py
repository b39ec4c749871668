"""DCGAN on scikit-learn's digits (upsampled to 16x16): sample grids over training.

    python -m examples.dcgan [--steps N] [--compare-eager]

fastgen's part of a DCGAN is the loss (fused BCE on logits); the convolutions are torch's. The
metric is a Fréchet distance on pixels between 500 samples and the digits (see _common).
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/dcgan.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import (Batches, digits, parser, pixel_frechet_distance, report_eager, save_grid, to_unit,
                              train, twin_of)
from fastgen import models
from fastgen.reference import models as eager

CONFIG = dict(latent_dim=32, image_size=16, channels=1, g_features=64, d_features=64)
SNAPSHOTS = 4  # rows of the picture: samples from the same latents at evenly spaced steps


def _session(model, name, args, real):
    torch.manual_seed(args.seed)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = Batches(real * 2 - 1, batch_size=64, seed=args.seed)  # tanh range
    fixed_z = model.latent(10, torch.Generator().manual_seed(1))
    eval_z = model.latent(500, torch.Generator().manual_seed(2))
    snapshots, at = [], {max(1, round(args.steps * k / SNAPSHOTS)) for k in range(1, SNAPSHOTS + 1)}

    def step(i):
        batch = batches.next()
        d_loss = model.discriminator_loss(batch, model.latent(len(batch)))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = model.generator_loss(model.latent(len(batch)))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if i + 1 in at:
            snapshots.append((i + 1, _samples(model, fixed_z)))
        return {"loss": d_loss.item(), "g_loss": g_loss.item()}

    def evaluate():
        return pixel_frechet_distance(_samples(model, eval_z), real)

    run = train(name, args.steps, step, evaluate, "pixel Fréchet distance to the digits", log_every=args.log_every,
                quiet=args.quiet, seed=args.seed)
    run.extra["snapshots"] = snapshots
    return run


@torch.no_grad()
def _samples(model, z):
    model.generator.eval()  # batch norm with its running statistics, as at inference
    images = to_unit(model.generator(z))
    model.generator.train()
    return images


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=2000).parse_args(argv)
    torch.manual_seed(args.seed)
    real, _ = digits(16)
    model = models.DCGAN(**CONFIG)
    twin = twin_of(model, eager.DCGAN, **CONFIG) if args.compare_eager else None
    run = _session(model, "dcgan", args, real)
    snapshots = run.extra["snapshots"]
    run.images.append(save_grid(os.path.join(args.out, "dcgan.png"), [s for _, s in snapshots] + [real[:10]],
                                row_titles=[f"step {k}" for k, _ in snapshots] + ["real digits"],
                                title=f"DCGAN samples (fixed latents) over {args.steps} steps"))
    if twin is not None:
        report_eager(run, _session(twin, "dcgan (eager twin)", args, real))
    return run


if __name__ == "__main__":
    main()
