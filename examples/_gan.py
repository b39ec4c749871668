"""What the GAN examples (dcgan, wgan_gp) share: the digits at 16x16 in tanh range, samples
from fixed latents at evenly spaced steps, the pixel Fréchet distance as the metric, the grid
of snapshots, and --compare-eager."""

from __future__ import annotations

import os
from typing import Callable

import torch

from examples._common import (
    Batches,
    digits,
    parser,
    pixel_frechet_distance,
    report_eager,
    save_grid,
    to_unit,
    train,
    twin_of,
)

SNAPSHOTS = 4  # rows of the picture: samples from the same latents at evenly spaced steps


@torch.no_grad()
def samples(model, z: torch.Tensor) -> torch.Tensor:
    """The generator's images of z in [0, 1], batch norm with its running statistics (inference)."""
    model.generator.eval()
    images = to_unit(model.generator(z))
    model.generator.train()
    return images


def session(model, name: str, args, real: torch.Tensor, make_step: Callable) -> object:
    """Trains `model` for args.steps steps; make_step(model, batches, rng) -> step(i) -> logs
    holds the example's own update (optimizers, losses)."""
    torch.manual_seed(args.seed)
    batches = Batches(real * 2 - 1, batch_size=64, seed=args.seed)  # tanh range
    rng = torch.Generator().manual_seed(args.seed)
    update = make_step(model, batches, rng)
    fixed_z = model.latent(10, torch.Generator().manual_seed(1))
    eval_z = model.latent(500, torch.Generator().manual_seed(2))
    snapshots, at = [], {max(1, round(args.steps * k / SNAPSHOTS)) for k in range(1, SNAPSHOTS + 1)}

    def step(i):
        logs = update(i)
        if i + 1 in at:
            snapshots.append((i + 1, samples(model, fixed_z)))
        return logs

    def evaluate():
        return pixel_frechet_distance(samples(model, eval_z), real)

    run = train(
        name,
        args.steps,
        step,
        evaluate,
        "pixel Fréchet distance to the digits",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )
    run.extra["snapshots"] = snapshots
    return run


def main(
    argv, *, doc: str, name: str, model_cls, twin_cls, config: dict, default_steps: int, make_step: Callable, title: str
):
    args = parser(doc.splitlines()[0], default_steps=default_steps).parse_args(argv)
    torch.manual_seed(args.seed)
    real, _ = digits(16)
    model = model_cls(**config)
    twin = twin_of(model, twin_cls, **config) if args.compare_eager else None
    run = session(model, name, args, real, make_step)
    snapshots = run.extra["snapshots"]
    run.images.append(
        save_grid(
            os.path.join(args.out, f"{name}.png"),
            [s for _, s in snapshots] + [real[:10]],
            row_titles=[f"step {k}" for k, _ in snapshots] + ["real digits"],
            title=f"{title} over {args.steps} steps",
        )
    )
    if twin is not None:
        report_eager(run, session(twin, f"{name} (eager twin)", args, real, make_step))
    return run
