"""SRGAN (fastgen's fused PixelShuffle + PReLU upsampler) on scikit-learn's digits: 4x
super-resolution of 8x8 inputs (the 32x32 digits average-pooled by 4) back to 32x32.

    python -m examples.srgan [--steps N] [--compare-eager]

As in the paper, the generator (SRResNet) first trains on the pixel MSE; the last third of the
steps adds the SRGAN discriminator and the adversarial term (weight 1e-3). The metric is the
held-out MSE (PSNR printed too), beside bicubic upsampling's.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/srgan.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn.functional as F

from examples._common import Batches, digits, parser, psnr, report_eager, save_grid, to_unit, train, twin_of
from fastgen import models
from fastgen.reference import models as eager

GENERATOR = dict(in_channels=1, out_channels=1, channels=32, num_blocks=4, scale=4)
DISCRIMINATOR = dict(in_channels=1, channels=16, fc_size=128)


def downsample(hr: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(hr, 4)


def bicubic(lr: torch.Tensor) -> torch.Tensor:
    return F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)


def _session(generator, discriminator, name, args, train_x, test_x):
    torch.manual_seed(args.seed)
    criterion = models.SRGANLoss(adversarial_weight=1e-3)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    batches = Batches(train_x * 2 - 1, batch_size=32, seed=args.seed)  # HR in the tanh range
    adversarial_from = (2 * args.steps) // 3

    def step(i):
        hr = batches.next()
        lr = downsample(hr)
        sr = generator(lr)
        logs = {}
        if i < adversarial_from:  # SRResNet pre-training on the pixel MSE
            loss = criterion.content(sr, hr)
        else:
            d_loss = criterion.discriminator(discriminator(hr), discriminator(sr.detach()))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            for p in discriminator.parameters():
                p.requires_grad_(False)
            loss = criterion.generator(sr, hr, discriminator(sr)).total
            for p in discriminator.parameters():
                p.requires_grad_(True)
            logs["d_loss"] = d_loss.item()
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        return {"loss": loss.item(), **logs}

    def evaluate():
        generator.eval()
        with torch.no_grad():
            sr = to_unit(generator(downsample(test_x * 2 - 1)))
        generator.train()
        return F.mse_loss(sr, test_x).item()

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "held-out MSE (x4 super-resolution)",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=1200).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, _), (test_x, _) = digits(32, test_fraction=0.2, seed=args.seed)
    generator, discriminator = models.SRResNet(**GENERATOR), models.SRGANDiscriminator(**DISCRIMINATOR)
    twins = None
    if args.compare_eager:
        twins = (
            twin_of(generator, eager.SRResNet, **GENERATOR),
            twin_of(discriminator, eager.SRGANDiscriminator, **DISCRIMINATOR),
        )
    run = _session(generator, discriminator, "srgan", args, train_x, test_x)
    generator.eval()
    with torch.no_grad():
        lr = downsample(test_x * 2 - 1)
        sr = to_unit(generator(lr))
    cubic = bicubic(to_unit(lr))
    run.extra.update(psnr=psnr(sr, test_x), bicubic_psnr=psnr(cubic, test_x))
    print(f"[srgan] held-out PSNR {run.extra['psnr']:.2f} dB (bicubic {run.extra['bicubic_psnr']:.2f} dB)")
    shown = slice(0, 10)
    nearest = F.interpolate(to_unit(lr[shown]), scale_factor=4, mode="nearest")
    run.images.append(
        save_grid(
            os.path.join(args.out, "srgan.png"),
            [nearest, cubic[shown], sr[shown], test_x[shown]],
            row_titles=["input 8x8", "bicubic", "SRGAN", "target 32x32"],
            title=f"SRGAN x4, {args.steps} steps: {run.extra['psnr']:.1f} dB "
            f"(bicubic {run.extra['bicubic_psnr']:.1f} dB)",
            scale=2,
        )
    )
    if twins is not None:
        report_eager(run, _session(*twins, "srgan (eager twin)", args, train_x, test_x))
    return run


if __name__ == "__main__":
    main()
