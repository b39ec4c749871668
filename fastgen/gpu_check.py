"""The whole CUDA path in one command, for the first minutes on a GPU (`make gpu-check`):

    python -m fastgen.gpu_check [--out bench/results/gpu] [--no-bench] [--no-compile] [--full] [--only FAMILY.OP]

1. Parity of every Triton kernel on real CUDA tensors: each case calls torch.ops.fastgen.<op>
   on CUDA tensors (so the dispatcher's CUDA registration is exercised too) and compares it
   with fastgen's CPU kernel on the same inputs, under the project's parity rule: the CUDA
   result's error against a float64 CPU run may be at most twice the CPU kernel's own error in
   the same dtype, plus a floor of a few ulps. The cases are the interpreter tests' (small
   odd shapes, every variant) in float32, float16, bfloat16 and float64, plus large shapes the
   interpreter is too slow for (several programs per row, many rows).
2. The public functions against the eager references (fastgen.reference) on the GPU, forward
   and gradients, under the same rule against a float64 CPU run of the reference; in float32
   also torch.compile(fullgraph=True) of them (the Triton kernels through Inductor).
3. `fastgen-bench --device cuda` on the standard shapes, in a subprocess.
4. bench/results/gpu/: gpu_check.json, gpu_check.md (and the benchmark's own files), with the
   device, driver, CUDA, torch and Triton versions.

Prints one line per failure and exits non-zero if any. Without CUDA it exits 2 at once with a
one-line reason. The same case list runs on the CPU under the Triton interpreter at tiny
shapes (tests/test_gpu_check.py), so a GPU run cannot die on a typo.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

FLOOR_ULPS = 8  # as tests/_tolerance.py
# A float64 result has no more precise reference than the CPU float64 kernel itself, and the
# Triton kernels may use other (equally valid) formulas: float64 results are held to float32's
# floor (8 float32 ulps of the magnitude). Seen under the interpreter: Philox noise drawn in
# float32 (tl.randn4x) where the CPU kernel draws it in float64 (3e-7), batch-hard distances
# through |a|^2 + |b|^2 - 2 a.b (4e-9).
FLOAT64_FLOOR_DTYPE = torch.float32
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class Case:
    """One Triton-backed op and how to build its argument tuples (CPU tensors)."""

    family: str  # fastgen.triton_kernels.<family>
    op: str  # torch.ops.fastgen.<op> and its CUDA function (fastgen.ops._triton.cuda_functions(family))
    make: Callable[[torch.dtype, str, torch.Generator], list]  # (dtype, size, gen) -> [args, ...]
    dtypes: tuple = tuple(DTYPES)
    sizes: tuple = ("small", "large")


CASES: list[Case] = []


def case(family: str, op: str, **kw):
    def register(make):
        CASES.append(Case(family, op, make, **kw))
        return make

    return register


def _randn(shape, dtype, gen, scale=1.0):
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


_cpu = torch.ops.fastgen


# --------------------------------------------------------------------------- reparam_kl

_REPARAM_SHAPES = {"small": [(3, 70), (2, 3, 5, 7), (1, 130)], "large": [(256, 4096), (64, 512, 8, 8)]}


def _gaussian(shape, dtype, gen):
    return _randn(shape, dtype, gen), _randn(shape, dtype, gen, 0.5), _randn(shape, dtype, gen)


@case("reparam_kl", "reparam_kl")
def _(dtype, size, gen):
    out = []
    for shape in _REPARAM_SHAPES[size]:
        mu, logvar, eps = _gaussian(shape, dtype, gen)
        seed = torch.tensor(987654321123)
        out += [(mu, logvar, e, s, red) for red in ("none", "mean") for e, s in ((eps, None), (None, seed))]
    return out


@case("reparam_kl", "kl_normal")
def _(dtype, size, gen):
    return [(*_gaussian(shape, dtype, gen)[:2], red) for shape in _REPARAM_SHAPES[size] for red in ("sum", "none")]


@case("reparam_kl", "reparam_kl_backward")
def _(dtype, size, gen):
    out = []
    for shape in _REPARAM_SHAPES[size]:
        mu, logvar, eps = _gaussian(shape, dtype, gen)
        grad_z = _randn(shape, dtype, gen)
        for red, grad_kl in (("none", _randn(shape[0], dtype, gen)), ("mean", torch.tensor(0.5, dtype=dtype))):
            out += [
                (grad_z, grad_kl, mu, logvar, eps, None, red, True),
                (grad_z, grad_kl, mu, logvar, None, torch.tensor(2**40 + 12345), red, False),
            ]
    return out


# --------------------------------------------------------------------------- coupling

_COUPLING_SHAPES = {
    "small": [("channel", (3, 10)), ("channel", (2, 4, 3, 5)), ("checkerboard", (2, 3, 4, 5))],
    "large": [("channel", (64, 12, 32, 32)), ("checkerboard", (64, 6, 64, 64))],
}


def _coupling_inputs(mask, shape, dtype, gen):
    ss = (shape[0], shape[1] // 2, *shape[2:]) if mask == "channel" else tuple(shape)
    x, s, t = _randn(shape, dtype, gen), _randn(ss, dtype, gen, 0.5), _randn(ss, dtype, gen)
    scale = _randn((ss[1],) + (1,) * (len(ss) - 2), dtype, gen)
    return x, s, t, scale


@case("coupling", "affine_coupling")
def _(dtype, size, gen):
    out = []
    for mask, shape in _COUPLING_SHAPES[size]:
        x, s, t, sc = _coupling_inputs(mask, shape, dtype, gen)
        out += [
            (x, s, t, scale, mask, parity, inverse)
            for parity, inverse, scale in ((0, False, sc), (1, True, None), (1, False, None), (0, True, sc))
        ]
    return out


@case("coupling", "affine_coupling_backward")
def _(dtype, size, gen):
    out = []
    for mask, shape in _COUPLING_SHAPES[size]:
        x, s, _, sc = _coupling_inputs(mask, shape, dtype, gen)
        g, gl = _randn(shape, dtype, gen), _randn(shape[0], dtype, gen)
        for parity, inverse, scale in ((0, False, sc), (1, True, None)):
            for out_mask, grads in (
                ([True] * 4, (g, gl)),
                ([True, True, False, True], (None, gl)),
                ([False, True, True, False], (g, None)),
            ):
                out.append((*grads, x, s, scale, mask, parity, inverse, out_mask))
    return out


# --------------------------------------------------------------------------- grad_penalty

_PENALTY_SHAPES = {"small": [(3, 70), (2, 3, 5, 7), (1, 1)], "large": [(64, 3, 128, 128), (512, 20000)]}
_PENALTIES = [(1.0, 10.0, False), (1.0, 10.0, True), (0.0, 5.0, False), (3.0, 0.5, True)]


@case("grad_penalty", "interpolate")
def _(dtype, size, gen):
    return [
        (_randn(s, dtype, gen), _randn(s, dtype, gen), torch.rand(s[0], generator=gen, dtype=torch.float64).to(dtype))
        for s in _PENALTY_SHAPES[size]
    ]


@case("grad_penalty", "interpolate_backward")
def _(dtype, size, gen):
    out = []
    for s in _PENALTY_SHAPES[size]:
        real, fake, grad = _randn(s, dtype, gen), _randn(s, dtype, gen), _randn(s, dtype, gen)
        alpha = torch.rand(s[0], generator=gen, dtype=torch.float64).to(dtype)
        out += [(grad, real, fake, alpha, mask) for mask in ([True, True, True], [False, True, False])]
    return out


@case("grad_penalty", "grad_penalty")
def _(dtype, size, gen):
    return [(_randn(s, dtype, gen), *p, True) for s in _PENALTY_SHAPES[size] for p in _PENALTIES]


@case("grad_penalty", "grad_penalty_backward")
def _(dtype, size, gen):
    out = []
    for s in _PENALTY_SHAPES[size]:
        grads = _randn(s, dtype, gen)
        for target, weight, one_sided in _PENALTIES:
            norms = _cpu.grad_penalty(grads, target, weight, one_sided, False)[1]
            gp, gn = torch.tensor(0.7).to(dtype), _randn(s[0], norms.dtype, gen)
            out += [(a, b, grads, norms, target, weight, one_sided) for a, b in ((gp, gn), (gp, None), (None, gn))]
    return out


# --------------------------------------------------------------------------- instance_norm

_NORM_SHAPES = {
    "small": [((2, 3, 5, 7), False), ((1, 37, 3, 4), True), ((1, 4, 3, 2, 3), True)],
    "large": [((4, 256, 64, 64), False), ((4, 256, 64, 64), True), ((16, 64, 4, 4), False), ((1, 64, 256, 256), False)],
}


def _norm_inputs(shape, channels_last, dtype, gen):
    def layout(t):
        if not channels_last:
            return t
        return t.to(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)

    x, res, grad = (layout(_randn(shape, dtype, gen)) for _ in range(3))
    w, b = _randn(shape[1], torch.float32, gen), _randn(shape[1], torch.float32, gen)
    rm, rv = _randn(shape[1], torch.float32, gen), torch.rand(shape[1], generator=gen) + 0.5
    return x, res, grad, w, b, rm, rv


def _norm_variants(w, b, rm, rv, res):
    return (
        ((w, b, None, None, res, True, 1e-5, "leaky_relu", 0.2), [True, True, True]),
        ((None, None, None, None, None, True, 1e-5, "relu", 0.0), [True, False, False]),
        ((w, None, rm, rv, None, False, 1e-5, "relu", 0.0), [True, True, False]),
    )


@case("instance_norm", "instance_norm")
def _(dtype, size, gen):
    out = []
    for shape, cl in _NORM_SHAPES[size]:
        x, res, _, w, b, rm, rv = _norm_inputs(shape, cl, dtype, gen)
        out += [(x, *args) for args, _ in _norm_variants(w, b, rm, rv, res)]
    return out


@case("instance_norm", "instance_norm_backward")
def _(dtype, size, gen):
    out = []
    for shape, cl in _NORM_SHAPES[size]:
        x, res, grad, w, b, rm, rv = _norm_inputs(shape, cl, dtype, gen)
        for args, mask in _norm_variants(w, b, rm, rv, res):
            _, mean, var = _cpu.instance_norm(x, *args)
            out.append((grad, x, args[0], args[1], mean, var, *args[5:], mask))
    return out


# --------------------------------------------------------------------------- pixel_norm

_PIXEL_NORM_SHAPES = {
    "small": [
        ((2, 5, 3, 4), False),
        ((2, 70, 3, 3), False),
        ((3, 9), False),
        ((2, 6, 3, 5), True),
        ((1, 3, 2, 5, 2), False),
    ],
    "large": [((16, 512, 8, 8), False), ((16, 512, 32, 32), True), ((4, 256, 128, 128), False)],
}


def _pixel_norm_inputs(size, dtype, gen):
    for shape, cl in _PIXEL_NORM_SHAPES[size]:
        x, g = _randn(shape, dtype, gen), _randn(shape, dtype, gen)
        yield (x.to(memory_format=torch.channels_last) if cl else x), g


@case("pixel_norm", "pixel_norm")
def _(dtype, size, gen):
    return [(x, 1e-8) for x, _ in _pixel_norm_inputs(size, dtype, gen)]


@case("pixel_norm", "pixel_norm_backward")
def _(dtype, size, gen):
    return [(g, x, 1e-8) for x, g in _pixel_norm_inputs(size, dtype, gen)]


# --------------------------------------------------------------------------- pixel_shuffle

_SHUFFLE_SHAPES = {
    "small": [(2, 3, r, 3, 5, cl) for r in (1, 2, 3) for cl in (False, True)],
    "large": [(16, 64, 2, 24, 24, False), (16, 64, 2, 24, 24, True), (4, 64, 2, 96, 96, True)],
}


def _shuffle_inputs(size, dtype, gen):
    for n, c, r, h, w, cl in _SHUFFLE_SHAPES[size]:
        x = _randn((n, c * r * r, h, w), dtype, gen)
        if cl:
            x = x.to(memory_format=torch.channels_last)
        weights = [(torch.rand(k, generator=gen, dtype=torch.float64) * 0.6 - 0.1).to(dtype) for k in (c, 1)]
        yield x, weights, r, _randn((n, c, h * r, w * r), dtype, gen)


@case("pixel_shuffle", "pixel_shuffle")
def _(dtype, size, gen):
    return [(x, r) for x, _, r, _ in _shuffle_inputs(size, dtype, gen)]


@case("pixel_shuffle", "pixel_unshuffle")
def _(dtype, size, gen):
    return [(_cpu.pixel_shuffle(x, r), r) for x, _, r, _ in _shuffle_inputs(size, dtype, gen)]


@case("pixel_shuffle", "pixel_shuffle_prelu")
def _(dtype, size, gen):
    return [(x, w, r) for x, ws, r, _ in _shuffle_inputs(size, dtype, gen) for w in ws]


@case("pixel_shuffle", "pixel_shuffle_prelu_backward")
def _(dtype, size, gen):
    return [
        (g, x, w, r, *flags)
        for x, ws, r, g in _shuffle_inputs(size, dtype, gen)
        for w in ws
        for flags in ((True, True), (True, False), (False, True))
    ]


# --------------------------------------------------------------------------- margin_softmax

_MARGINS = [
    (1.0, 0.5, 0.0, False),
    (4.0, 0.0, 0.0, False),
    (1.0, 0.5, 0.0, True),
    (1.2, 0.3, 0.1, False),
    (1.0, 0.0, 0.35, False),
]
_MARGIN_SHAPES = {"small": [(35, 90, 40)], "large": [(512, 10000, 512)]}


def _margin_inputs(size, dtype, gen):
    for batch, classes, emb in _MARGIN_SHAPES[size]:
        x, w = _randn((batch, emb), dtype, gen), _randn((classes, emb), dtype, gen)
        labels = torch.randint(0, classes, (batch,), generator=gen)
        labels[1] = -100
        for start, stop in ((0, classes), (classes * 4 // 9, classes * 5 // 6)):  # the whole weight and a shard
            for m1, m2, m3, easy in _MARGINS:
                yield x, w[start:stop], labels, (start, classes, 16.0, m1, m2, m3, easy, -100)


@case("margin_softmax", "margin_softmax")
def _(dtype, size, gen):
    return [(x, w, labels, *args) for x, w, labels, args in _margin_inputs(size, dtype, gen)]


@case("margin_softmax", "margin_softmax_backward")
def _(dtype, size, gen):
    out = []
    for x, w, labels, args in _margin_inputs(size, dtype, gen):
        lse, _, cos_t = _cpu.margin_softmax(x, w, labels, *args)
        grads = (_randn(x.shape[0], lse.dtype, gen), _randn(x.shape[0], lse.dtype, gen))
        out += [(*grads, x, w, labels, lse, cos_t, *args, mask) for mask in ([True, True], [False, True])]
    return out


# --------------------------------------------------------------------------- triplet

_TRIPLET_SHAPES = {"small": [(19, 70)], "large": [(4096, 512)]}
_TRIPLET_ARGS = [(12.0, 2.0, True), (12.0, 1.0, False), (2.0, math.inf, True), (12.0, 3.0, False)]


def _triplet_inputs(size, dtype, gen):
    for rows, dim in _TRIPLET_SHAPES[size]:
        a, p, n = (_randn((rows, dim), dtype, gen) for _ in range(3))
        p[0] = a[0]
        yield a, p, n


@case("triplet", "triplet_margin_loss")
def _(dtype, size, gen):
    return [
        (a, p, n, m, norm, 1e-6, swap, red)
        for a, p, n in _triplet_inputs(size, dtype, gen)
        for m, norm, swap in _TRIPLET_ARGS
        for red in ("mean", "none")
    ]


@case("triplet", "triplet_margin_loss_backward")
def _(dtype, size, gen):
    return [
        (
            (torch.tensor(0.7) if red == "mean" else _randn(a.shape[0], torch.float64, gen)).to(dtype),
            a,
            p,
            n,
            m,
            norm,
            1e-6,
            swap,
            red,
        )
        for a, p, n in _triplet_inputs(size, dtype, gen)
        for m, norm, swap in _TRIPLET_ARGS
        for red in ("mean", "none")
    ]


@case("triplet", "contrastive_loss")
def _(dtype, size, gen):
    return [
        (a, p, (torch.arange(a.shape[0]) % 2).to(dtype), 11.0, 1e-6, red)
        for a, p, _ in _triplet_inputs(size, dtype, gen)
        for red in ("sum", "none")
    ]


@case("triplet", "contrastive_loss_backward")
def _(dtype, size, gen):
    return [
        (
            (torch.tensor(1.5) if red == "sum" else _randn(a.shape[0], torch.float64, gen)).to(dtype),
            a,
            p,
            (torch.arange(a.shape[0]) % 2).to(dtype),
            11.0,
            1e-6,
            red,
            True,
        )
        for a, p, _ in _triplet_inputs(size, dtype, gen)
        for red in ("sum", "none")
    ]


_BATCH_HARD_SHAPES = {"small": [(37, 40)], "large": [(1024, 512)]}


def _batch_hard_inputs(size, dtype, gen):
    for rows, dim in _BATCH_HARD_SHAPES[size]:
        e = _randn((rows, dim), dtype, gen)
        e[5] = e[4]  # a duplicate
        labels = torch.arange(rows) // 3
        labels[-1] = 10**6  # an anchor without positives
        yield e, labels


@case("triplet", "batch_hard_triplet_loss")
def _(dtype, size, gen):
    return [
        (e, labels, 0.5, squared, red)
        for e, labels in _batch_hard_inputs(size, dtype, gen)
        for squared in (False, True)
        for red in ("mean", "none")
    ]


@case("triplet", "batch_hard_triplet_loss_backward")
def _(dtype, size, gen):
    out = []
    for e, labels in _batch_hard_inputs(size, dtype, gen):
        for squared in (False, True):
            for red in ("mean", "none"):
                _, pos, neg = _cpu.batch_hard_triplet_loss(e, labels, 0.5, squared, red)
                g = torch.tensor(1.0) if red == "mean" else _randn(e.shape[0], torch.float64, gen)
                out.append((g.to(dtype), e, pos, neg, 0.5, squared, red))
    return out


# --------------------------------------------------------------------------- running the cases


def triton_ops() -> set[str]:
    """Every fastgen op with a CUDA kernel registered (the Triton launchers)."""
    names = {n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastgen::")}
    return {n for n in names if torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgen::{n}", "CUDA")}


def _map(args, fn):
    return tuple(fn(a) if isinstance(a, torch.Tensor) else a for a in args)


def _to64(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64) if t.is_floating_point() else t


def _outputs(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def compare(got: torch.Tensor, cpu: torch.Tensor, ref64: torch.Tensor) -> str | None:
    """The parity rule (tests/_tolerance.py): None if got passes, else why not."""
    got = got.cpu()
    if got.shape != cpu.shape:
        return f"shape {tuple(got.shape)} != CPU {tuple(cpu.shape)}"
    if got.dtype != cpu.dtype:
        return f"dtype {got.dtype} != CPU {cpu.dtype}"
    if got.numel() == 0:
        return None
    if not cpu.is_floating_point():
        return None if torch.equal(got, cpu) else "integer output differs from the CPU kernel's"
    g, c, r = got.double(), cpu.double(), ref64.double()
    if not torch.equal(torch.isnan(g), torch.isnan(r)):
        return "NaN pattern differs from the float64 reference"
    g, c, r = g.nan_to_num(), c.nan_to_num(), r.nan_to_num()
    scale = max(1.0, r.abs().max().item())
    floor_dtype = FLOAT64_FLOOR_DTYPE if cpu.dtype == torch.float64 else cpu.dtype
    floor = FLOOR_ULPS * torch.finfo(floor_dtype).eps * scale
    err, err_cpu = (g - r).abs().max().item(), (c - r).abs().max().item()
    if err > 2 * err_cpu + floor:
        return f"error {err:.3g} > 2 x CPU kernel's {err_cpu:.3g} + floor {floor:.3g}"
    return None


@dataclass
class Result:
    case: str
    dtype: str
    size: str
    variants: int = 0
    failures: list = field(default_factory=list)
    seconds: float = 0.0


def run_case(
    c: Case,
    dtype_name: str,
    size: str,
    device_fn: Callable,
    to_device: Callable,
    seed: int = 0,
    limit: int | None = None,
) -> Result:
    """Runs every argument tuple of a case (the first `limit`) through device_fn and the CPU kernels."""
    res = Result(f"{c.family}.{c.op}", dtype_name, size)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    cpu_op = getattr(torch.ops.fastgen, c.op)
    try:
        variants = c.make(DTYPES[dtype_name], size, gen)
    except Exception as e:  # noqa: BLE001 - a broken case is a failure, not the end of the run
        res.failures.append(f"building the inputs raised {type(e).__name__}: {e}")
        return res
    for i, args in enumerate(variants[:limit]):
        res.variants += 1
        what = f"variant {i}"
        try:
            got = _outputs(device_fn(c, _map(args, to_device)))
            cpu = _outputs(cpu_op(*args))
            ref = _outputs(cpu_op(*_map(args, _to64)))
        except Exception as e:  # noqa: BLE001
            res.failures.append(f"{what}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        if len(got) != len(cpu):
            res.failures.append(f"{what}: {len(got)} outputs, the CPU kernel gives {len(cpu)}")
            continue
        for k, (g, cp, r) in enumerate(zip(got, cpu, ref)):
            why = compare(g, cp, r)
            if why:
                res.failures.append(f"{what}, output {k}: {why}")
    res.seconds = time.perf_counter() - start
    return res


def cuda_op(c: Case, args):
    out = getattr(torch.ops.fastgen, c.op)(*args)
    torch.cuda.synchronize()
    return out


def launcher_op(c: Case, args):
    """The op's CUDA function itself: its checks and Triton launcher (fastgen/ops/_triton.py), for
    the CPU test under TRITON_INTERPRET=1."""
    from fastgen.ops._triton import cuda_functions

    return getattr(cuda_functions(c.family), c.op)(*args)


def run_parity(
    device_fn, to_device, dtypes=None, sizes=("small", "large"), only: str = "", echo=print, limit: int | None = None
):
    results = []
    for c in CASES:
        if only and only not in f"{c.family}.{c.op}":
            continue
        for size in sizes:
            if size not in c.sizes:
                continue
            for dtype_name in dtypes or c.dtypes:
                r = run_case(c, dtype_name, size, device_fn, to_device, limit=limit)
                results.append(r)
                for f in r.failures:
                    echo(f"FAIL parity {r.case} [{r.dtype}, {r.size}] {f}")
    return results


# --------------------------------------------------------------------------- functional vs eager


@dataclass
class EagerCase:
    name: str
    make: Callable[[torch.dtype, torch.Generator], tuple]  # -> (inputs, grad_inputs positions)
    fast: Callable
    ref: Callable


def _eager_cases() -> list[EagerCase]:
    import torch.nn.functional as TF

    from fastgen import functional as F
    from fastgen.reference import grad_penalty as R_gp
    from fastgen.reference import instance_norm as R_in
    from fastgen.reference import margin_softmax as R_ms
    from fastgen.reference import pixel_norm as R_pn
    from fastgen.reference import pixel_shuffle as R_ps
    from fastgen.reference import reparam_kl as R_kl

    def gauss(dtype, gen):
        return (_randn((256, 512), dtype, gen), _randn((256, 512), dtype, gen, 0.5), _randn((256, 512), dtype, gen))

    def norm(dtype, gen):
        x = _randn((4, 64, 64, 64), dtype, gen).to(memory_format=torch.channels_last)
        return (x, _randn((4, 64, 64, 64), dtype, gen))

    def shuffle(dtype, gen):
        return (
            _randn((8, 256, 24, 24), dtype, gen),
            (torch.rand(64, generator=gen, dtype=torch.float64) * 0.5).to(dtype),
        )

    def pn(dtype, gen):
        return (_randn((16, 512, 8, 8), dtype, gen),)

    def gp(dtype, gen):
        return (_randn((64, 3, 64, 64), dtype, gen),)

    def margin(dtype, gen):
        labels = torch.randint(0, 4000, (256,), generator=gen)
        return (_randn((256, 512), dtype, gen), _randn((4000, 512), dtype, gen), labels)

    def trip(dtype, gen):
        return tuple(_randn((1024, 256), dtype, gen) for _ in range(3))

    return [
        EagerCase(
            "reparameterize_kl",
            gauss,
            lambda m, lv, e: F.reparameterize_kl(m, lv, eps=e),
            lambda m, lv, e: R_kl.reparameterize_kl(m, lv, eps=e),
        ),
        EagerCase(
            "instance_norm[relu,residual]",
            norm,
            lambda x, r: F.instance_norm(x, residual=r, activation="relu"),
            lambda x, r: R_in.instance_norm(x, residual=r, activation="relu"),
        ),
        EagerCase(
            "pixel_shuffle_prelu",
            shuffle,
            lambda x, w: F.pixel_shuffle_prelu(x, w, 2),
            lambda x, w: R_ps.pixel_shuffle_prelu(x, w, 2),
        ),
        EagerCase("pixel_norm", pn, F.pixel_norm, R_pn.pixel_norm),
        EagerCase("grad_norm_penalty", gp, F.grad_norm_penalty, R_gp.grad_norm_penalty),
        EagerCase(
            "margin_cross_entropy[arcface]",
            margin,
            lambda x, w, y: F.margin_cross_entropy(x, w, y, s=64.0),
            lambda x, w, y: R_ms.margin_cross_entropy(x, w, y, s=64.0),
        ),
        EagerCase("triplet_margin_loss", trip, F.triplet_margin_loss, TF.triplet_margin_loss),
    ]


def _forward_backward(fn, inputs, device, gen_seed=1):
    leaves = [t.detach().to(device).requires_grad_(t.is_floating_point()) for t in inputs]
    outs = _outputs(fn(*leaves))
    floats = [o for o in outs if o.is_floating_point() and o.requires_grad]
    gen = torch.Generator().manual_seed(gen_seed)
    upstream = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype).to(device) for o in floats]
    grads = torch.autograd.grad(floats, [t for t in leaves if t.requires_grad], upstream, allow_unused=True)
    return [o.detach() for o in outs] + [g if g is not None else torch.zeros(()) for g in grads]


def run_eager(device: str, dtypes=("float32", "bfloat16"), echo=print, compiled: bool = False) -> list[Result]:
    """fastgen's functional API against the eager reference on device, forward and gradients,
    under the parity rule (the eager reference's error as the yardstick). compiled: also
    torch.compile(fullgraph=True) of the fastgen call in float32 (the Triton kernels through
    Inductor: fastgen/ops/_triton.py)."""
    results = []
    try:
        cases = _eager_cases()
    except Exception as e:  # noqa: BLE001
        echo(f"FAIL eager cases could not be built: {type(e).__name__}: {e}")
        return [Result("eager", "-", "-", failures=[str(e)])]
    for c in cases:
        for dtype_name in dtypes:
            r = Result(f"eager.{c.name}", dtype_name, "standard")
            start = time.perf_counter()
            try:
                inputs = c.make(DTYPES[dtype_name], torch.Generator().manual_seed(0))
                eager = _forward_backward(c.ref, inputs, device)
                ref = _forward_backward(c.ref, _map(inputs, _to64), "cpu")
                contenders = [("fastgen", c.fast)]
                if compiled and dtype_name == "float32":
                    torch._dynamo.reset()
                    contenders.append(("torch.compile(fastgen)", torch.compile(c.fast, fullgraph=True)))
                for who, fn in contenders:
                    fast = _forward_backward(fn, inputs, device)
                    r.variants += 1
                    for k, (f, e, x) in enumerate(zip(fast, eager, ref)):
                        why = compare(f, e.cpu(), x)
                        if why:
                            r.failures.append(f"{who} tensor {k}: {why} (eager's error as the CPU's)")
            except Exception as e:  # noqa: BLE001
                r.failures.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            r.seconds = time.perf_counter() - start
            for f in r.failures:
                echo(f"FAIL {r.case} [{dtype_name}] {f}")
            results.append(r)
    return results


# --------------------------------------------------------------------------- environment, bench, report


def environment() -> dict:
    import importlib.metadata as md

    env = {
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "python": platform.python_version(),
        "host": platform.node(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        env["triton"] = md.version("triton")
    except md.PackageNotFoundError:
        env["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            device=torch.cuda.get_device_name(0),
            capability=f"sm_{props.major}{props.minor}",
            sms=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
        )
        try:
            env["driver"] = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                ).stdout.strip()
                or None
            )
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    return env


def run_bench(out_dir: str, quick: bool, echo=print) -> dict:
    """fastgen-bench --device cuda on the standard shapes, into out_dir (its own JSON/MD/PNG)."""
    cmd = [
        sys.executable,
        "-m",
        "fastgen.bench",
        "--device",
        "cuda",
        "--quick" if quick else "--full",
        "--out",
        out_dir,
    ]
    probe = subprocess.run([sys.executable, "-m", "fastgen.bench", "--help"], capture_output=True, text=True)
    if "--device" not in probe.stdout:
        msg = "fastgen-bench has no --device option in this checkout: CUDA timing skipped"
        echo(f"FAIL bench {msg}")
        return {"command": cmd, "returncode": None, "error": msg}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    info = {
        "command": cmd,
        "returncode": done.returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "stdout_tail": done.stdout[-4000:],
        "stderr_tail": done.stderr[-4000:],
    }
    if done.returncode:
        echo(
            f"FAIL bench fastgen-bench --device cuda exited {done.returncode}: "
            f"{(done.stderr.strip().splitlines() or [''])[-1]}"
        )
    return info


def write_report(out_dir: str, env: dict, parity: list, eager: list, bench: dict | None, seconds: float) -> None:
    os.makedirs(out_dir, exist_ok=True)
    rows = [vars(r) for r in parity + eager]
    failures = sum(len(r.failures) for r in parity + eager) + (1 if bench and bench.get("returncode") != 0 else 0)
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
        json.dump(
            {"environment": env, "seconds": round(seconds, 1), "failures": failures, "parity": rows, "bench": bench},
            f,
            indent=1,
        )
    lines = [f"# fastgen GPU check: {env.get('device', 'no device')}", ""]
    lines += [f"- {k}: {v}" for k, v in env.items() if k != "traces"]
    lines += [
        f"- wall time: {seconds:.0f} s",
        f"- failures: {failures}",
        "",
        "| case | dtype | size | variants | failures | seconds |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.case} | {r.dtype} | {r.size} | {r.variants} | {len(r.failures)} | {r.seconds:.2f} |"
        for r in parity + eager
    ]
    fails = [f"- {r.case} [{r.dtype}, {r.size}]: {f}" for r in parity + eager for f in r.failures]
    if fails:
        lines += ["", "## Failures", ""] + fails
    traces = env.get("traces")
    if isinstance(traces, dict) and traces and "error" not in traces:
        lines += [
            "",
            "## torch.compile tracing (fastgen/ops/_triton.py)",
            "",
            "| op | rule registered | Triton kernels in the traced graph |",
            "|---|---|---|",
        ]
        lines += [f"| {op} | {t.get('registered')} | {t.get('kernels', t.get('error'))} |" for op, t in traces.items()]
    if bench is not None:
        lines += [
            "",
            "## Benchmark",
            "",
            f"`{' '.join(map(str, bench.get('command', [])))}`: "
            + (bench.get("error") or f"exit {bench.get('returncode')} in {bench.get('seconds')} s"),
            "(bench.json / bench.md / bench.png in this folder)",
        ]
    with open(os.path.join(out_dir, "gpu_check.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    _chart(out_dir, parity + eager)


def _chart(out_dir: str, results: list) -> None:
    """A PNG of seconds per case (failures in red), when matplotlib is installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    per: dict = {}
    for r in results:
        t, bad = per.get(r.case, (0.0, False))
        per[r.case] = (t + r.seconds, bad or bool(r.failures))
    names = list(per)
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(names) + 1))
    ax.barh(names, [per[n][0] for n in names], color=["tab:red" if per[n][1] else "tab:green" for n in names])
    ax.set_xlabel("seconds (all dtypes and sizes); red: a failure")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "gpu_check.png"), dpi=100)
    plt.close(fig)


def trace_report(device: str = "cuda") -> dict:
    """For every op: does AOTAutograd (torch.compile's front end) turn it into its Triton kernels
    (fastgen/ops/_triton.py)? Ops registered with traceable=False are tried too, with the rule
    registered for this run only, to show which could be switched on. Fake tensors: nothing runs.
    Returns {op: {"registered": bool, "kernels": n} or {"error": ...}}."""
    import logging

    from torch._functorch.aot_autograd import aot_export_module
    from torch._library.simple_registry import singleton
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch._subclasses.functional_tensor import FunctionalTensorMode

    from fastgen.ops._triton import _decomposition

    logging.getLogger("torch._higher_order_ops.triton_kernel_wrap").setLevel(logging.ERROR)
    out = {}
    for c in CASES:
        qualname = f"fastgen::{c.op}"
        registered = singleton.find(qualname).torch_dispatch_rules.find(FunctionalTensorMode) is not None
        lib = None
        if not registered:
            lib = torch.library.Library("fastgen", "FRAGMENT")
            torch.library.register_torch_dispatch(
                qualname, FunctionalTensorMode, _decomposition(lambda *a, c=c: launcher_op(c, a)), lib=lib
            )
        try:
            args = c.make(torch.float32, "small", torch.Generator().manual_seed(0))[0]
            with FakeTensorMode(allow_non_fake_inputs=True):
                fargs = [
                    torch.empty_strided(a.shape, a.stride(), dtype=a.dtype, device=device)
                    if isinstance(a, torch.Tensor)
                    else a
                    for a in args
                ]
            pos = [i for i, a in enumerate(fargs) if isinstance(a, torch.Tensor)]

            class Call(torch.nn.Module):
                def forward(self, *ts, op=c.op, fargs=fargs, pos=pos):
                    full = list(fargs)
                    for i, t in zip(pos, ts):
                        full[i] = t
                    res = getattr(torch.ops.fastgen, op)(*full)
                    return tuple(res) if isinstance(res, (tuple, list)) else (res,)

            code = aot_export_module(Call(), tuple(fargs[i] for i in pos), trace_joint=False)[0].code
            out[c.op] = {"registered": registered, "kernels": code.count("triton_kernel_wrapper_functional(")}
        except Exception as e:  # noqa: BLE001
            out[c.op] = {"registered": registered, "error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"}
        finally:
            if lib is not None:
                lib._destroy()
    return out


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the check, or None."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "TRITON_INTERPRET is set: the Triton kernels would run in the CPU interpreter; unset it"
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch {torch.__version__} sees no GPU"
        return f"no CUDA device ({build}): make gpu-check needs an NVIDIA GPU"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed: the CUDA kernels are Triton kernels"
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fastgen.gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default=os.path.join("bench", "results", "gpu"))
    p.add_argument("--no-bench", action="store_true", help="skip fastgen-bench --device cuda")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile of the functional cases")
    p.add_argument("--full", action="store_true", help="benchmark the papers' full-size shapes (longer)")
    p.add_argument("--only", default="", help="run only the parity cases whose family.op contains this")
    args = p.parse_args(argv)
    reason = no_cuda_reason()
    if reason:
        print(f"gpu-check: {reason}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    env = environment()
    print(
        f"gpu-check on {env.get('device')} ({env.get('capability')}), driver {env.get('driver')}, "
        f"torch {env['torch']}, triton {env['triton']}",
        flush=True,
    )
    torch.manual_seed(0)
    try:
        parity = run_parity(cuda_op, lambda t: t.cuda(), only=args.only)
        eager = run_eager("cuda", compiled=not args.no_compile) if not args.only else []
    except Exception:  # noqa: BLE001 - report whatever ran
        traceback.print_exc()
        parity, eager = [], [Result("gpu_check", "-", "-", failures=["crashed: see the traceback"])]
    n_var = sum(r.variants for r in parity + eager)
    n_fail = sum(len(r.failures) for r in parity + eager)
    print(
        f"parity: {n_var} variants in {len(parity + eager)} (case, dtype, size) groups, {n_fail} failures, "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    try:
        traces = trace_report()
    except Exception as e:  # noqa: BLE001 - informative only
        traces = {"error": f"{type(e).__name__}: {e}"}
    for op, t in traces.items():
        if isinstance(t, dict) and not t.get("registered", True) and "error" not in t:
            print(f"info: fastgen::{op} (traceable=False) traces into {t['kernels']} Triton kernel(s) here")
        elif isinstance(t, dict) and t.get("registered") and t.get("kernels", 0) == 0:
            print(f"FAIL trace fastgen::{op}: {t.get('error', 'no Triton kernel in the traced graph')}")
            n_fail += 1
    env["traces"] = traces
    bench = None if args.no_bench else run_bench(args.out, quick=not args.full)
    write_report(args.out, env, parity, eager, bench, time.perf_counter() - start)
    failed = n_fail + (1 if bench and bench.get("returncode") != 0 else 0)
    print(f"gpu-check: {'FAILED' if failed else 'passed'}; report in {args.out}/gpu_check.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
