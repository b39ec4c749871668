"""Per-call cost at tiny sizes: forward + backward of one fused op vs its eager equivalent.

At these sizes the kernels take a few microseconds and what is measured is the fixed cost per
call (Python, dispatcher, autograd). fastgen and eager are timed interleaved in one process:
each sample is `--calls` consecutive forward+backward calls, samples alternate between the two
contenders, and the table reports medians in microseconds per call with the interquartile
range and the minimum (the cost without interference: on a shared machine other processes
preempt the threads of a parallel region, which inflates medians, eager's most, since it runs
more ops). Run: python -m fastgen.bench.tiny [--threads 2] [--samples 41] [--calls 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as TF

import fastgen
from fastgen import functional as F
from fastgen.reference import coupling as R_coupling
from fastgen.reference import grad_penalty as R_gp
from fastgen.reference import margin_softmax as R_margin
from fastgen.reference import pixel_norm as R_pixel_norm
from fastgen.reference import reparam_kl as R_reparam


def _leaf(*shape, scale=1.0, positive=False):
    t = torch.randn(*shape) * scale
    if positive:
        t = t.abs() + 0.5
    return t.requires_grad_()


def cases():
    """(name, shape, fastgen step, eager step): each step runs forward and backward."""

    def backward(out):
        (out if out.dim() == 0 else out.sum()).backward()

    def instance_norm_relu(shape):
        x, w, b = _leaf(*shape), _leaf(shape[1], positive=True), _leaf(shape[1])
        fast = lambda: backward(F.instance_norm(x, weight=w, bias=b, activation="relu"))  # noqa: E731
        eager = lambda: backward(torch.relu(TF.instance_norm(x, weight=w, bias=b)))  # noqa: E731
        return fast, eager

    for shape in ((2, 8, 4, 4), (1, 512, 2, 2), (1, 512, 4, 4)):
        yield ("instance norm + ReLU", shape, *instance_norm_relu(shape))

    x, w = _leaf(2, 16, 4, 4), _leaf(4, positive=True)
    yield (
        "PixelShuffle(2) + PReLU",
        (2, 16, 4, 4),
        lambda: backward(F.pixel_shuffle_prelu(x, w, 2)),
        lambda: backward(TF.prelu(TF.pixel_shuffle(x, 2), w)),
    )

    mu, logvar = _leaf(8, 16), _leaf(8, 16, scale=0.1)

    def reparam(fn):
        def step():
            z, kl = fn(mu, logvar)
            (z.sum() + kl).backward()

        return step

    yield ("reparameterize_kl", (8, 16), reparam(F.reparameterize_kl), reparam(R_reparam.reparameterize_kl))

    xc, s, t = _leaf(2, 8, 4, 4), _leaf(2, 4, 4, 4, scale=0.1), _leaf(2, 4, 4, 4)

    def coupling(fn):
        def step():
            y, logdet = fn(xc, s, t)
            (y.sum() + logdet.sum()).backward()

        return step

    yield ("affine coupling (channel)", (2, 8, 4, 4), coupling(F.affine_coupling), coupling(R_coupling.affine_coupling))

    g = _leaf(8, 3, 4, 4)
    yield (
        "grad_norm_penalty",
        (8, 3, 4, 4),
        lambda: backward(F.grad_norm_penalty(g)),
        lambda: backward(R_gp.grad_norm_penalty(g)),
    )

    xp = _leaf(2, 16, 4, 4)
    yield (
        "pixel_norm",
        (2, 16, 4, 4),
        lambda: backward(F.pixel_norm(xp)),
        lambda: backward(R_pixel_norm.pixel_norm(xp)),
    )

    emb, weight = _leaf(8, 16), _leaf(10, 16)
    labels = torch.randint(0, 10, (8,))
    yield (
        "margin_cross_entropy (ArcFace)",
        (8, 16, 10),
        lambda: backward(F.margin_cross_entropy(emb, weight, labels)),
        lambda: backward(R_margin.margin_cross_entropy(emb, weight, labels)),
    )

    a, p, n = _leaf(8, 16), _leaf(8, 16), _leaf(8, 16)
    yield (
        "triplet_margin_loss",
        (8, 16),
        lambda: backward(F.triplet_margin_loss(a, p, n)),
        lambda: backward(TF.triplet_margin_loss(a, p, n)),
    )


def _sample(step, calls):
    start = time.perf_counter_ns()
    for _ in range(calls):
        step()
    return (time.perf_counter_ns() - start) / calls / 1e3


def _quartiles(v):
    q = statistics.quantiles(v, n=4)
    return q[0], q[2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=41)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    allocator = os.environ.get("LD_PRELOAD") or "system (glibc malloc)"
    print(
        f"fastgen {fastgen.__version__ if hasattr(fastgen, '__version__') else ''} torch {torch.__version__}, "
        f"{args.threads} threads, allocator: {allocator}, {args.samples} samples x {args.calls} calls, "
        f"forward + backward, µs per call: median [IQR] / min; load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| op | shape | fastgen µs | eager µs | eager / fastgen (median, min) |")
    print("|---|---|---:|---:|---:|")
    for name, shape, fast, eager in cases():
        for _ in range(20):  # warm-up: lazy imports, allocator
            fast()
            eager()
        tf, te = [], []
        for _ in range(args.samples):
            tf.append(_sample(fast, args.calls))
            te.append(_sample(eager, args.calls))
        mf, me = statistics.median(tf), statistics.median(te)
        (f1, f3), (e1, e3) = _quartiles(tf), _quartiles(te)
        lf, le = min(tf), min(te)
        print(
            f"| {name} | {tuple(shape)} | {mf:.1f} [{f1:.1f}-{f3:.1f}] / {lf:.1f} "
            f"| {me:.1f} [{e1:.1f}-{e3:.1f}] / {le:.1f} | {me / mf:.2f}x, {le / lf:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
