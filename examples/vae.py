"""A VAE (fastgen's fused reparameterization + KL) on scikit-learn's 8x8 digits: reconstructions
and samples from the prior.

    python -m examples.vae [--steps N] [--compare-eager]
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/vae.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import Batches, digits, optimize, parser, report_eager, save_grid, train, twin_of
from fastgen import models
from fastgen.reference import models as eager

CONFIG = dict(in_features=64, hidden=256, latent_dim=8, recon="bce")


def _session(model, name, args, train_x, test_x, labels=None, test_labels=None):
    """Trains `model` (VAE or CVAE) with Adam; evaluates the negative ELBO on the test split with
    fixed noise, so the number is comparable between runs."""
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = Batches(train_x, *([labels] if labels is not None else []), batch_size=128, seed=args.seed)
    eval_eps = torch.randn(len(test_x), model.latent_dim, generator=torch.Generator().manual_seed(123))

    def step(i):
        batch = batches.next()
        return optimize(opt, model.loss(*batch) if labels is not None else model.loss(batch))

    def evaluate():
        with torch.no_grad():
            args_ = (test_x, test_labels) if labels is not None else (test_x,)
            return model.loss(*args_, eps=eval_eps).item()

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "test negative ELBO (nats)",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=4000).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, _), (test_x, _) = digits(test_fraction=0.2, seed=args.seed)
    model = models.VAE(**CONFIG)
    twin = twin_of(model, eager.VAE, **CONFIG) if args.compare_eager else None
    run = _session(model, "vae", args, train_x, test_x)
    with torch.no_grad():
        shown = test_x[:12]
        recon = torch.sigmoid(model(shown, eps=torch.zeros(12, CONFIG["latent_dim"])).recon).view_as(shown)
        samples = model.sample(24, generator=torch.Generator().manual_seed(2)).view(24, 1, 8, 8)
    run.images.append(
        save_grid(
            os.path.join(args.out, "vae.png"),
            [shown, recon, samples[:12], samples[12:]],
            row_titles=["test digit", "reconstruction", "sample", "sample"],
            title=f"VAE, {args.steps} steps",
        )
    )
    if twin is not None:
        report_eager(run, _session(twin, "vae (eager twin)", args, train_x, test_x))
    return run


if __name__ == "__main__":
    main()
