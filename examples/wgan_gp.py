"""WGAN-GP on scikit-learn's digits (upsampled to 16x16): sample grids over training.

    python -m examples.wgan_gp [--steps N] [--compare-eager]

One step is the paper's generator iteration: n_critic = 5 critic steps, each with fastgen's
fused interpolation and gradient penalty (and its double backward, through fastgen's instance
norm in the critic), then one generator step. The metric is a Fréchet distance on pixels
between 500 samples and the digits (see _common).
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/wgan_gp.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import (Batches, digits, parser, pixel_frechet_distance, report_eager, save_grid, to_unit,
                              train, twin_of)
from fastgen import models
from fastgen.reference import models as eager

# The paper's Adam betas (0, 0.9) and n_critic = 5; a larger learning rate than its 1e-4 so that
# a two-minute run gets somewhere.
CONFIG = dict(latent_dim=32, image_size=16, channels=1, g_features=32, d_features=32, critic_norm="instance",
              lr_generator=5e-4, lr_critic=5e-4)
SNAPSHOTS = 4


def _session(model, name, args, real):
    torch.manual_seed(args.seed)
    opt_g, opt_c = model.optimizers()
    batches = Batches(real * 2 - 1, batch_size=64, seed=args.seed)  # tanh range
    rng = torch.Generator().manual_seed(args.seed)  # latents and the penalty's alphas
    fixed_z = model.latent(10, torch.Generator().manual_seed(1))
    eval_z = model.latent(500, torch.Generator().manual_seed(2))
    snapshots, at = [], {max(1, round(args.steps * k / SNAPSHOTS)) for k in range(1, SNAPSHOTS + 1)}

    def step(i):
        logs = model.train_step([batches.next() for _ in range(model.n_critic)], opt_g, opt_c, generator=rng)
        if i + 1 in at:
            snapshots.append((i + 1, _samples(model, fixed_z)))
        return {"loss": logs["critic_loss"].item(), "g_loss": logs["generator_loss"].item()}

    def evaluate():
        return pixel_frechet_distance(_samples(model, eval_z), real)

    run = train(name, args.steps, step, evaluate, "pixel Fréchet distance to the digits", log_every=args.log_every,
                quiet=args.quiet, seed=args.seed)
    run.extra["snapshots"] = snapshots
    return run


@torch.no_grad()
def _samples(model, z):
    model.generator.eval()
    images = to_unit(model.generator(z))
    model.generator.train()
    return images


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=600).parse_args(argv)
    torch.manual_seed(args.seed)
    real, _ = digits(16)
    model = models.WGANGP(**CONFIG)
    twin = twin_of(model, eager.WGANGP, **CONFIG) if args.compare_eager else None
    run = _session(model, "wgan_gp", args, real)
    snapshots = run.extra["snapshots"]
    run.images.append(save_grid(os.path.join(args.out, "wgan_gp.png"), [s for _, s in snapshots] + [real[:10]],
                                row_titles=[f"step {k}" for k, _ in snapshots] + ["real digits"],
                                title=f"WGAN-GP samples (fixed latents) over {args.steps} generator steps"))
    if twin is not None:
        report_eager(run, _session(twin, "wgan_gp (eager twin)", args, real))
    return run


if __name__ == "__main__":
    main()
