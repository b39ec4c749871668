"""ArcFace (fastgen's fused margin logits + cross-entropy) on scikit-learn's digits: an
embedding net whose classes are the ten digits, nearest-center accuracy on a held-out split and
a plot of the normalized embeddings.

    python -m examples.arcface [--steps N] [--compare-eager]

The embeddings are 2-D, as in the figures of the ArcFace paper, so the normalized embeddings
are points on the unit circle: each digit gathers around its class center, with the margin m
left between classes. The metric is the held-out ArcFace loss; accuracy is printed too.
"""

from __future__ import annotations

import math
import os
import sys

if __package__ in (None, ""):  # run as a script: python examples/arcface.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch
import torch.nn.functional as F

from examples._common import Batches, digits, optimize, parser, pyplot, report_eager, save_figure, train, twin_of
from fastgen import models
from fastgen.reference import models as eager

# Ten classes on a circle leave 2 pi / 10 = 0.63 rad each: the margin must fit inside, so m is
# smaller than the paper's 0.5 (for 512-D faces), and s suits two dimensions.
CONFIG = dict(num_classes=10, in_channels=1, image_size=8, embedding_size=2, width=32, s=16.0, m=0.2)


def _session(model, name, args, train_x, train_y, test_x, test_y):
    torch.manual_seed(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = Batches(train_x, train_y, batch_size=128, seed=args.seed)

    def step(i):
        return optimize(opt, model.loss(*batches.next()))

    def evaluate():
        model.eval()
        with torch.no_grad():
            loss = model.loss(test_x, test_y).item()
        model.train()
        return loss

    run = train(
        name,
        args.steps,
        step,
        evaluate,
        "held-out ArcFace loss",
        log_every=args.log_every,
        quiet=args.quiet,
        seed=args.seed,
    )
    run.extra["accuracy"] = accuracy(model, test_x, test_y)
    print(f"[{name}] held-out nearest-center accuracy {run.extra['accuracy']:.1%}")
    return run


def accuracy(model, x, y) -> float:
    """The fraction of samples whose embedding is closest (in angle) to their own class center."""
    model.eval()
    predicted = model.cosine(x).argmax(1)
    model.train()
    return (predicted == y).float().mean().item()


def _plot(path, model, x, y, title):
    plt = pyplot()
    model.eval()
    with torch.no_grad():
        points = F.normalize(model(x), dim=1)
        centers = F.normalize(model.head.weight.detach().float(), dim=1)
    model.train()
    jitter = 1 + 0.04 * torch.randn(
        len(points), 1, generator=torch.Generator().manual_seed(0)
    )  # radial, to see density
    points = points * jitter
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    circle = torch.linspace(0, 2 * math.pi, 200)
    ax.plot(circle.cos(), circle.sin(), color="0.85", lw=1)
    cmap = plt.get_cmap("tab10")
    for digit in range(10):
        sel = y == digit
        ax.scatter(points[sel, 0], points[sel, 1], s=4, color=cmap(digit), label=str(digit))
        cx, cy = centers[digit].tolist()
        ax.plot([0, cx], [0, cy], color=cmap(digit), lw=1)
        ax.text(1.22 * cx, 1.22 * cy, str(digit), color=cmap(digit), ha="center", va="center", fontsize=9)
    ax.set_xlim(-1.4, 1.4)
    ax.set_ylim(-1.4, 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv=None):
    args = parser(__doc__.splitlines()[0], default_steps=3000).parse_args(argv)
    torch.manual_seed(args.seed)
    (train_x, train_y), (test_x, test_y) = digits(test_fraction=0.3, seed=args.seed)
    model = models.ArcFaceNet(**CONFIG)
    twin = twin_of(model, eager.ArcFaceNet, **CONFIG) if args.compare_eager else None
    run = _session(model, "arcface", args, train_x, train_y, test_x, test_y)
    run.images.append(
        _plot(
            os.path.join(args.out, "arcface.png"),
            model,
            test_x,
            test_y,
            f"ArcFace on digits, held-out embeddings (lines: class centers)\n"
            f"{args.steps} steps, nearest-center accuracy {run.extra['accuracy']:.1%}",
        )
    )
    if twin is not None:
        report_eager(run, _session(twin, "arcface (eager twin)", args, train_x, train_y, test_x, test_y))
    return run


if __name__ == "__main__":
    main()
