"""fastgen.distributed.ShardedMarginCrossEntropy: two processes on the gloo backend (CPU,
localhost) give the loss and every gradient of the single-process op on the whole batch."""

from __future__ import annotations

import os
import socket
import time
import traceback

import pytest
import torch
import torch.multiprocessing as mp

from fastgen.distributed import shard_range
from tests._tolerance import assert_parity

WORLD = 2
# (batch rows per rank, classes, embedding size, margin kwargs, reduction)
CASES = [
    ((3, 5), 11, 6, dict(), "mean"),  # uneven batches, 11 classes over 2 ranks
    ((4, 4), 30, 8, dict(m1=1.0, m2=0.0, m3=0.35), "sum"),  # CosFace
    ((2, 6), 9, 5, dict(m1=3.0, m2=0.0, m3=0.0), "none"),  # SphereFace, per-row losses
    ((5, 1), 40, 4, dict(m1=1.1, m2=0.2, m3=0.1, easy_margin=True), "mean"),
]


def _data(case):
    sizes, classes, emb, _, _ = case
    gen = torch.Generator().manual_seed(classes)
    x = torch.randn(sum(sizes), emb, generator=gen, dtype=torch.float64)
    w = torch.randn(classes, emb, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (sum(sizes),), generator=gen)
    labels[1] = -100  # an ignored row
    return x, w, labels


def _worker(rank, port, result_dir):
    import torch.distributed as dist

    import fastgen  # noqa: F401  (registers the ops in the spawned worker)
    from fastgen import functional as F
    from fastgen.distributed import ShardedMarginCrossEntropy

    try:
        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=WORLD,
            timeout=__import__("datetime").timedelta(seconds=60),
        )
        for case in CASES:
            sizes, classes, emb, margin, reduction = case
            x, w, labels = _data(case)
            first = sum(sizes[:rank])
            rows = slice(first, first + sizes[rank])
            head = ShardedMarginCrossEntropy(emb, classes, s=16.0, reduction=reduction, dtype=torch.float64, **margin)
            head.load_full_weight(w)
            assert (head.class_start, head.class_end) == shard_range(classes, WORLD, rank)
            x_local = x[rows].clone().requires_grad_()
            loss = head(x_local, labels[rows])
            upstream = torch.arange(1.0, loss.numel() + 1, dtype=torch.float64).reshape(loss.shape)
            loss.backward(upstream)

            x_ref, w_ref = x.clone().requires_grad_(), w.clone().requires_grad_()
            ref = F.margin_cross_entropy(x_ref, w_ref, labels, s=16.0, reduction=reduction, **margin)
            if reduction == "none":
                ref_local = ref[rows]
                ref_upstream = torch.zeros_like(ref)
                # every rank's upstream is 1..B_r on its own rows
                for r in range(WORLD):
                    start = sum(sizes[:r])
                    ref_upstream[start : start + sizes[r]] = torch.arange(1.0, sizes[r] + 1, dtype=torch.float64)
            else:
                ref_local, ref_upstream = ref, upstream
            gx, gw = torch.autograd.grad(ref, (x_ref, w_ref), ref_upstream)
            torch.testing.assert_close(loss, ref_local, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(x_local.grad, gx[rows], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(head.weight.grad, gw[head.class_start : head.class_end], rtol=1e-10, atol=1e-10)
        # float32 on the default threads, a larger shard
        torch.set_num_threads(2)
        torch.manual_seed(0)  # the same data on both ranks
        x, w, labels = torch.randn(8, 16), torch.randn(3000, 16), torch.randint(0, 3000, (8,))
        head = ShardedMarginCrossEntropy(16, 3000)
        head.load_full_weight(w)
        x_local = x[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
        head(x_local, labels[rank * 4 : (rank + 1) * 4]).backward()
        x_ref, w_ref = x.clone().requires_grad_(), w.clone().requires_grad_()
        F.margin_cross_entropy(x_ref, w_ref, labels).backward()
        # The single-process op in float64 is the reference (logits are s * cos, s = 64: its
        # rounding scales with s, see tests/test_margin_softmax.py).
        x64, w64 = x.double().requires_grad_(), w.double().requires_grad_()
        F.margin_cross_entropy(x64, w64, labels).backward()
        rows, classes = slice(rank * 4, (rank + 1) * 4), slice(head.class_start, head.class_end)
        assert_parity(x_local.grad, x_ref.grad[rows], x64.grad[rows], floor_ulps=64.0, what="float32 grad_embeddings")
        assert_parity(
            head.weight.grad, w_ref.grad[classes], w64.grad[classes], floor_ulps=64.0, what="float32 grad_weight"
        )
        dist.destroy_process_group()
        open(os.path.join(result_dir, f"rank{rank}.ok"), "w").close()
    except Exception:  # noqa: BLE001 - reported to the parent
        with open(os.path.join(result_dir, f"rank{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_the_single_process_op(tmp_path):
    ctx = mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 240
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("the two gloo processes did not finish in 240 s")
    except mp.ProcessRaisedException:
        pass
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    errors = [p.read_text() for p in tmp_path.glob("*.err")]
    assert not errors, "\n".join(errors)
    assert sorted(p.name for p in tmp_path.glob("*.ok")) == ["rank0.ok", "rank1.ok"]


def test_shard_range_covers_the_classes_once():
    for classes in (2, 7, 100, 101):
        for world in (1, 2, 3, 8):
            if classes < world:
                continue
            ranges = [shard_range(classes, world, r) for r in range(world)]
            assert ranges[0][0] == 0 and ranges[-1][1] == classes
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert max(e - s for s, e in ranges) - min(e - s for s, e in ranges) <= 1


def test_module_needs_an_initialized_group():
    from fastgen.distributed import ShardedMarginCrossEntropy

    with pytest.raises(RuntimeError, match="needs an initialized torch.distributed process group"):
        ShardedMarginCrossEntropy(8, 10)
