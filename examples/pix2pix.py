"""pix2pix (fastgen's fused instance norm + LeakyReLU / ReLU in the U-Net) on scikit-learn's
digits at 32x32: edge maps -> digits, paired.

    python -m examples.pix2pix [--steps N] [--compare-eager]

The edges are the digit's morphological gradient (dilation minus erosion), thresholded: an
outline without the stroke's fill. The metric is the held-out L1 (in [0, 1] pixels) to the
true digit.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/pix2pix.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn.functional as F

from examples._common import Batches, digits, parser, report_eager, save_grid, to_unit, train, twin_of
from fastgen import models
from fastgen.reference import models as eager

# U-Net with 5 levels (32 -> 1), 16 filters; a 2-layer PatchGAN; the paper's lambda_L1 = 100.
# Instance norm without dropout (the reference's --norm instance --no_dropout): the fused
# instance norm is what this example shows; Pix2Pix() alone defaults to the paper's batch norm.
CONFIG = dict(
    input_nc=1,
    output_nc=1,
    num_downs=5,
    ngf=16,
    ndf=16,
    n_layers_D=2,
    lambda_L1=100.0,
    norm="instance",
    use_dropout=False,
)


def edges(images: torch.Tensor) -> torch.Tensor:
    """Binary outlines of images in [0, 1]: dilation - erosion > 0.25."""
    dilated = F.max_pool2d(images, 3, 1, 1)
    eroded = -F.max_pool2d(-images, 3, 1, 1)
    return ((dilated - eroded) > 0.25).float()


def _session(model, name, args, train_x, test_x):
    torch.manual_seed(args.seed)
    opt_g = torch.optim.Adam(model.netG.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.netD.parameters(), lr=1e-3, betas=(0.5, 0.999))
    pairs = Batches(edges(train_x) * 2 - 1, train_x * 2 - 1, batch_size=16, seed=args.seed)
    test_A = edges(test_x) * 2 - 1

    def step(i):
        real_A, real_B = pairs.next()
        for p in model.netD.parameters():
            p.requires_grad_(False)
        losses = model.generator_loss(real_A, real_B)
        opt_g.zero_grad()
        losses.total.backward()
        opt_g.step()
        for p in model.netD.parameters():
            p.requires_grad_(True)
        d_loss = model.discriminator_loss(real_A, real_B, losses.fake_B.detach())
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        return {"loss": losses.total.item(), "l1": losses.l1.item(), "d_loss": d_loss.item()}

    def evaluate():
        with torch.no_grad():
            return (to_unit(model(test_A)) - test_x).abs().mean().item()

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "held-out L1 to the true digit",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=1000).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, _), (test_x, _) = digits(32, test_fraction=0.2, seed=args.seed)
    model = models.Pix2Pix(**CONFIG)
    twin = twin_of(model, eager.Pix2Pix, **CONFIG) if args.compare_eager else None
    run = _session(model, "pix2pix", args, train_x, test_x)
    shown = test_x[:10]
    with torch.no_grad():
        output = to_unit(model(edges(shown) * 2 - 1))
    run.images.append(
        save_grid(
            os.path.join(args.out, "pix2pix.png"),
            [edges(shown), output, shown],
            row_titles=["input: edges", "pix2pix output", "target"],
            title=f"pix2pix, edges -> digits, {args.steps} steps",
            scale=2,
        )
    )
    if twin is not None:
        report_eager(run, _session(twin, "pix2pix (eager twin)", args, train_x, test_x))
    return run


if __name__ == "__main__":
    main()
