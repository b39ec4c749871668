"""CycleGAN (fastgen's fused instance norm + ReLU) on two unpaired domains made from
scikit-learn's digits at 16x16: A = digits, B = inverted digits (white background), drawn from
disjoint halves of the training set, so no pair is ever seen.

    python -m examples.cyclegan [--steps N] [--compare-eager]

The metric uses the pairing the model never saw: the L1 distance (in [0, 1] pixels) between
G_A(a) and the inverted a on held-out digits.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/cyclegan.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import Batches, digits, parser, report_eager, save_grid, to_unit, train, twin_of
from fastgen import models
from fastgen.reference import models as eager

# A small ResNet generator (16 filters, 3 blocks at 4x4) and a 2-layer PatchGAN; no identity loss
# (the translation is the inversion, so G_A(b) = b is the wrong thing to ask for).
CONFIG = dict(input_nc=1, output_nc=1, ngf=16, ndf=16, n_blocks=3, n_layers_D=2, lambda_identity=0.0)


def invert(images: torch.Tensor) -> torch.Tensor:
    return -images  # images in [-1, 1]


def _session(model, name, args, train_x, test_x):
    torch.manual_seed(args.seed)
    gens = [*model.netG_A.parameters(), *model.netG_B.parameters()]
    discs = [*model.netD_A.parameters(), *model.netD_B.parameters()]
    opt_g = torch.optim.Adam(gens, lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs, lr=1e-3, betas=(0.5, 0.999))
    half = len(train_x) // 2
    domain_A = Batches(train_x[:half], batch_size=16, seed=args.seed)
    domain_B = Batches(invert(train_x[half:]), batch_size=16, seed=args.seed + 1)

    def step(i):
        real_A, real_B = domain_A.next(), domain_B.next()
        for p in discs:  # the generator step needs no discriminator weight gradients
            p.requires_grad_(False)
        losses = model.generator_loss(real_A, real_B)
        opt_g.zero_grad()
        losses.total.backward()
        opt_g.step()
        for p in discs:
            p.requires_grad_(True)
        d_loss = model.discriminator_loss(real_A, real_B, losses.fake_A, losses.fake_B)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        return {"loss": losses.total.item(), "cycle": (losses.cycle_A + losses.cycle_B).item(), "d_loss": d_loss.item()}

    def evaluate():
        with torch.no_grad():
            return (to_unit(model.netG_A(test_x)) - to_unit(invert(test_x))).abs().mean().item()

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "held-out L1 of G_A(a) to inverted a",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=600).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, _), (test_x, _) = digits(16, test_fraction=0.2, seed=args.seed)
    train_x, test_x = train_x * 2 - 1, test_x * 2 - 1  # tanh range
    model = models.CycleGAN(**CONFIG)
    twin = twin_of(model, eager.CycleGAN, **CONFIG) if args.compare_eager else None
    run = _session(model, "cyclegan", args, train_x, test_x)
    with torch.no_grad():
        a, b = test_x[:10], invert(test_x[10:20])
        fake_B, rec_A, fake_A, rec_B = model(a, b)
    rows = [to_unit(t) for t in (a, fake_B, rec_A, b, fake_A, rec_B)]
    run.images.append(
        save_grid(
            os.path.join(args.out, "cyclegan.png"),
            rows,
            row_titles=["A: digit", "G_A(A)", "G_B(G_A(A))", "B: inverted", "G_B(B)", "G_A(G_B(B))"],
            title=f"CycleGAN, unpaired digits <-> inverted digits, {args.steps} steps",
        )
    )
    if twin is not None:
        report_eager(run, _session(twin, "cyclegan (eager twin)", args, train_x, test_x))
    return run


if __name__ == "__main__":
    main()
