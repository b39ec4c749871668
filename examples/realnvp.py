"""RealNVP (fastgen's fused affine couplings) on two moons (2-D: a density plot and samples) and
on scikit-learn's 8x8 digits (bits/dim on a held-out split, and samples).

    python -m examples.realnvp [--steps N] [--compare-eager]

Both flows train for --steps steps; the reported metric is the digits flow's held-out bits/dim
(with fixed dequantization noise, so runs compare).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/realnvp.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from examples._common import (
    Batches,
    digits,
    optimize,
    parser,
    pyplot,
    report_eager,
    save_figure,
    save_grid,
    train,
    twin_of,
)
from fastgen import models
from fastgen.reference import models as eager

MOONS = dict(features=2, hidden=64, num_couplings=8)
# The digits hold 17 grey levels (0..16); 2 scales, 32 channels, 2 residual blocks per conditioner.
DIGITS = dict(in_channels=1, image_size=8, num_scales=2, mid_channels=32, num_blocks=2, n_bins=17)


def moons(n: int, seed: int) -> torch.Tensor:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.05, random_state=seed)
    return torch.tensor((x - [0.5, 0.25]) / [0.87, 0.5], dtype=torch.float32)  # roughly unit variance


def _moons_session(model, name, args):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches(moons(4000, args.seed), batch_size=256, seed=args.seed)
    test = moons(2000, args.seed + 1)

    def step(i):
        return optimize(opt, model.loss(batches.next()))

    def evaluate():
        with torch.no_grad():
            return model.loss(test).item()

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "two moons test NLL (nats)",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def _digits_session(model, name, args, train_x, test_x):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = Batches(train_x, batch_size=64, seed=args.seed)
    test_noise = torch.rand(test_x.shape, generator=torch.Generator().manual_seed(7))
    rng = torch.Generator().manual_seed(args.seed)  # dequantization noise

    def step(i):
        return optimize(opt, model.loss(batches.next(), generator=rng), clip=100.0)

    def evaluate():
        model.eval()
        with torch.no_grad():
            bpd = model.loss(test_x, noise=test_noise).item()
        model.train()
        return bpd

    return train(
        name,
        args.steps,
        step,
        evaluate,
        "digits test bits/dim",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )


def _plot_moons(path, model, steps):
    plt = pyplot()
    data = moons(1000, 3)
    side = torch.linspace(-2.5, 2.5, 200)
    grid = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = model.log_prob(grid).exp().reshape(200, 200)
        samples = model.sample(1000, generator=torch.Generator().manual_seed(4))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3))
    axes[0].scatter(data[:, 0], data[:, 1], s=2)
    axes[0].set_title("data")
    axes[1].imshow(density.numpy(), origin="lower", extent=(-2.5, 2.5, -2.5, 2.5), cmap="viridis")
    axes[1].set_title("learned density")
    axes[2].scatter(samples[:, 0], samples[:, 1], s=2, color="tab:orange")
    axes[2].set_title("samples")
    for ax in axes:
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"RealNVP2d on two moons, {steps} steps", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=1500).parse_args(argv)
    torch.manual_seed(args.seed)
    flow2d = models.RealNVP2d(**MOONS)
    twin2d = twin_of(flow2d, eager.RealNVP2d, **MOONS) if args.compare_eager else None
    moons_run = _moons_session(flow2d, "realnvp moons", args)

    (train_x, _), (test_x, _) = digits(test_fraction=0.2, seed=args.seed)
    flow = models.RealNVP(**DIGITS)
    twin = twin_of(flow, eager.RealNVP, **DIGITS) if args.compare_eager else None
    run = _digits_session(flow, "realnvp digits", args, train_x, test_x)
    run.extra["moons"] = moons_run
    run.images.append(_plot_moons(os.path.join(args.out, "realnvp_moons.png"), flow2d, args.steps))
    flow.eval()
    with torch.no_grad():
        samples = flow.sample(30, generator=torch.Generator().manual_seed(5), temperature=0.8).clamp(0, 1)
    run.images.append(
        save_grid(
            os.path.join(args.out, "realnvp_digits.png"),
            [test_x[:10], samples[:10], samples[10:20], samples[20:]],
            row_titles=["test digit"] + ["sample (T=0.8)"] * 3,
            title=f"RealNVP on digits: {run.metric_end:.2f} bits/dim, {args.steps} steps",
        )
    )
    if twin is not None:
        report_eager(moons_run, _moons_session(twin2d, "realnvp moons (eager twin)", args))
        report_eager(run, _digits_session(twin, "realnvp digits (eager twin)", args, train_x, test_x))
    return run


if __name__ == "__main__":
    main()
