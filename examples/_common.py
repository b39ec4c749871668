"""What every example shares: data that ships with scikit-learn (nothing is downloaded), the
command line, the training loop with its progress bar and loss log, the --compare-eager timing
against the model's eager twin, and PNG grids."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")

# Each training run ends with one line SUMMARY + JSON: {"run", "metric", "first", "last", "better"
# ("lower" or "higher"), "steps"}, the held-out metric before and after training, for scripts
# and tests to read.
SUMMARY = "summary: "


def parser(description: str, default_steps: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, default=default_steps, help=f"training steps (default {default_steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--compare-eager",
        action="store_true",
        help="also train the eager twin (plain torch.nn) for the same steps and print both wall times",
    )
    p.add_argument("--out", default=OUT_DIR, help="where the PNGs go (default examples/out)")
    p.add_argument("--log-every", type=int, default=0, help="print the loss every N steps (default: ~10 lines)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------- data


def digits(size: int = 8, *, test_fraction: float = 0.0, seed: int = 0):
    """scikit-learn's 8x8 digits (1797 images) as (N, 1, size, size) floats in [0, 1] and int64
    labels; upsampled bilinearly when size > 8. With test_fraction, returns (train, test) pairs
    split by a fixed permutation."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.int64)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    if not test_fraction:
        return images, labels
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(labels) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return (images[train], labels[train]), (images[test], labels[test])


class Batches:
    """Random minibatches from tensors sharing dim 0, from a seeded generator (so the fastgen
    model and its eager twin see exactly the same batches)."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, seed: int):
        self.tensors = tensors
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next(self):
        idx = torch.randint(0, len(self.tensors[0]), (self.batch_size,), generator=self.generator)
        out = tuple(t[idx] for t in self.tensors)
        return out if len(out) > 1 else out[0]


# --------------------------------------------------------------------------- training


@dataclass
class Run:
    """What one training run did: the evaluation metric before and after, the per-step losses,
    the wall time, and the pictures written."""

    metric_name: str
    metric_start: float
    metric_end: float
    losses: list = field(default_factory=list)
    seconds: float = 0.0  # wall time of the timed steps
    timed_steps: int = 0  # all but the first few (see train)
    images: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def optimize(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: float | None = None) -> dict:
    """One optimizer step on loss (gradient norm clipped to `clip` if given); the logs of a step."""
    opt.zero_grad()
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    opt.step()
    return {"loss": loss.item()}


def train(
    name: str,
    steps: int,
    step: Callable[[int], dict],
    evaluate: Callable[[], float],
    metric_name: str,
    *,
    log_every: int = 0,
    quiet: bool = False,
    seed: int = 0,
    better: str = "lower",
) -> Run:
    """Runs step(i) -> {"loss": float, ...} for i in range(steps) with a progress bar, printing
    the losses every log_every steps; evaluate() -> float (`better`: "lower" or "higher") is
    measured before and after, on fixed data, so runs are comparable, and printed last as the
    SUMMARY line."""
    torch.manual_seed(seed)
    start_metric = evaluate()
    log_every = log_every or max(1, steps // 10)
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - installed by make install
        tqdm = None
    bar = tqdm(total=steps, desc=name, unit="step", leave=False, disable=quiet or tqdm is None) if tqdm else None
    losses = []
    # The wall time leaves out the first few steps (one-time costs: first calls, allocator growth,
    # oneDNN primitive creation), which would otherwise fall on whichever model trains first.
    warmup = min(10, steps // 10)
    began = started = time.perf_counter()
    for i in range(steps):
        if i == warmup:
            began = time.perf_counter()
        logs = step(i)
        losses.append(logs["loss"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4g}")
        if (i + 1) % log_every == 0 or i == 0:
            text = " ".join(f"{k} {v:.4g}" for k, v in logs.items())
            (bar.write if bar is not None else print)(f"[{name}] step {i + 1:5d}/{steps}  {text}")
    seconds, total = time.perf_counter() - began, time.perf_counter() - started
    timed_steps = steps - warmup
    if bar is not None:
        bar.close()
    end_metric = evaluate()
    print(f"[{name}] {metric_name}: {start_metric:.4g} -> {end_metric:.4g}  ({steps} steps, {total:.1f} s)")
    print(
        SUMMARY
        + json.dumps(
            {
                "run": name,
                "metric": metric_name,
                "first": start_metric,
                "last": end_metric,
                "better": better,
                "steps": steps,
            }
        )
    )
    return Run(metric_name, start_metric, end_metric, losses, seconds, timed_steps=timed_steps)


def report_eager(fast: Run, eager: Run) -> None:
    print(
        f"wall time for the same {fast.timed_steps} steps (after {len(fast.losses) - fast.timed_steps} untimed): "
        f"fastgen {fast.seconds:.2f} s, "
        f"eager twin {eager.seconds:.2f} s ({eager.seconds / max(fast.seconds, 1e-9):.2f}x)"
    )


# --------------------------------------------------------------------------- pictures


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=72)
    pyplot().close(fig)
    return path


def save_grid(
    path: str, rows: list[torch.Tensor], *, row_titles: list[str] | None = None, title: str = "", scale: int = 4
) -> str:
    """Writes rows of images (each a (N, C, H, W) tensor in [0, 1]) as one PNG."""
    plt = pyplot()
    cols = max(len(r) for r in rows)
    h, w = rows[0].shape[-2:]
    margin = 1.3 if row_titles else 0.1  # inches kept on the left for the row titles
    width, height = cols * w * scale / 72 + margin + 0.1, len(rows) * h * scale / 72 + (0.35 if title else 0.1)
    fig, axes = plt.subplots(len(rows), cols, figsize=(width, height), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(images):
                img = images[c].detach().float().clamp(0, 1)
                if img.shape[0] == 1:
                    ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                else:
                    ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
        if row_titles:
            axes[r][0].text(
                -0.15, 0.5, row_titles[r], transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8
            )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(
        left=margin / width,
        right=1 - 0.05 / width,
        top=1 - (0.3 if title else 0.05) / height,
        bottom=0.05 / height,
        wspace=0.05,
        hspace=0.05,
    )
    return save_figure(fig, path)


def twin_of(model: torch.nn.Module, twin_cls, *args, **kwargs) -> torch.nn.Module:
    """The eager twin of `model`, starting from the same weights."""
    twin = twin_cls(*args, **kwargs)
    twin.load_state_dict(model.state_dict())
    return twin


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (tanh generators) back to [0, 1] for pictures and metrics."""
    return (images.detach().float() + 1) / 2


def pixel_frechet_distance(fake: torch.Tensor, real: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two image sets (N, C, H, W) in [0, 1],
    on the images average-pooled to 8x8: FID's formula on pixels instead of Inception features
    (nothing to download). Lower is better; it falls as a generator's samples come to look like
    the data, and stays high for a collapsed or blurry generator."""
    import numpy as np

    def stats(images):
        feats = F.adaptive_avg_pool2d(images.detach().double(), 8).flatten(1).numpy()
        return feats.mean(0), np.cov(feats, rowvar=False)

    (mu1, cov1), (mu2, cov2) = stats(fake), stats(real)
    # tr sqrt(cov1 cov2) = sum of the square roots of the eigenvalues of s cov2 s, s = sqrt(cov1)
    w, v = np.linalg.eigh(cov1)
    s = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(s @ cov2 @ s), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in [0, 1]."""
    mse = F.mse_loss(output.detach().float().clamp(0, 1), target.detach().float())
    return float(10 * torch.log10(1 / mse.clamp_min(1e-12)))
