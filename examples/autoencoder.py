"""The plain autoencoder of the lectures on scikit-learn's 8x8 digits: reconstructions, and what
decoding random codes gives (not digits: the reason the VAE exists).

    python -m examples.autoencoder [--steps N] [--compare-eager]
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/autoencoder.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import Batches, digits, optimize, parser, report_eager, save_grid, train, twin_of
from fastgen import models
from fastgen.reference import models as eager

CONFIG = dict(in_features=64, hidden=128, code_dim=8)


def _session(model, name, args, train_x, test_x):
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches = Batches(train_x, batch_size=64, seed=args.seed)

    def step(i):
        return optimize(opt, model.loss(batches.next()))

    def evaluate():
        with torch.no_grad():
            return model.loss(test_x).item()

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "test reconstruction MSE",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=3000).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, _), (test_x, _) = digits(test_fraction=0.2, seed=args.seed)
    model = models.AutoEncoder(**CONFIG)
    twin = twin_of(model, eager.AutoEncoder, **CONFIG) if args.compare_eager else None
    run = _session(model, "autoencoder", args, train_x, test_x)
    with torch.no_grad():
        shown = test_x[:12]
        recon = model(shown).view_as(shown)
        codes = model.encode(test_x)
        random_codes = codes.mean(0) + codes.std(0) * torch.randn(
            12, CONFIG["code_dim"], generator=torch.Generator().manual_seed(1)
        )
        decoded = model.decode(random_codes).view(12, 1, 8, 8)
    run.images.append(
        save_grid(
            os.path.join(args.out, "autoencoder.png"),
            [shown, recon, decoded],
            row_titles=["test digit", "reconstruction", "random code"],
            title=f"autoencoder, {args.steps} steps",
        )
    )
    if twin is not None:
        report_eager(run, _session(twin, "autoencoder (eager twin)", args, train_x, test_x))
    return run


if __name__ == "__main__":
    main()
