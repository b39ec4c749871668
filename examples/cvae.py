"""A conditional VAE on scikit-learn's 8x8 digits: each row of the picture is one digit asked for
by its label (0 to 9), each column a different draw from the prior.

    python -m examples.cvae [--steps N] [--compare-eager]
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/cvae.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import digits, parser, report_eager, save_grid, twin_of
from examples.vae import _session
from fastgen import models
from fastgen.reference import models as eager

CONFIG = dict(in_features=64, num_classes=10, hidden=256, latent_dim=4, recon="bce")


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=4000).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, train_y), (test_x, test_y) = digits(test_fraction=0.2, seed=args.seed)
    model = models.CVAE(**CONFIG)
    twin = twin_of(model, eager.CVAE, **CONFIG) if args.compare_eager else None
    run = _session(model, "cvae", args, train_x, test_x, train_y, test_y)
    per_row = 10
    with torch.no_grad():
        g = torch.Generator().manual_seed(3)
        rows = [model.sample(per_row, labels=digit, generator=g).view(per_row, 1, 8, 8) for digit in range(10)]
    run.images.append(
        save_grid(
            os.path.join(args.out, "cvae.png"),
            rows,
            row_titles=[f"label {d}" for d in range(10)],
            title=f"CVAE: digits on request, {args.steps} steps",
        )
    )
    if twin is not None:
        report_eager(run, _session(twin, "cvae (eager twin)", args, train_x, test_x, train_y, test_y))
    return run


if __name__ == "__main__":
    main()
