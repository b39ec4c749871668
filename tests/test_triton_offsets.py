"""64-bit offsets in the Triton kernels: a program whose elements sit past 2**31 elements from the
base pointer reads and writes the right ones (issue 12: offsets promoted to int64 before they
are multiplied by strides; GPUs hold such tensors, 32x64x1024x1024 is 2**31).

Each check runs one kernel under the interpreter on a lazily mapped buffer of more than 2**31
bfloat16 elements (torch.empty does not touch it: a few pages become resident), with a grid of
a few programs, the last of which starts at or past element 2**31 through a product of 32-bit
sizes (sample index x sample size, row x row length, image x image size). With 32-bit
arithmetic that product wraps negative: the process reads outside the buffer and crashes, or
computes the wrong elements. Each check runs in a subprocess so a crash is a failure."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

PRELUDE = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import triton.language as tl
import fastgen  # noqa: F401
torch.manual_seed(0)
"""

CHECKS = {
    # Sample 2 of an (N, C=1, M) planar tensor with a sample stride of 2**30: n * stride_n.
    "instance_norm": """
        from fastgen.triton_kernels import instance_norm as K
        M, stride_n, N = 64, 2**30, 3
        x = torch.empty(N * stride_n, dtype=torch.bfloat16)
        out = torch.empty_like(x)
        for n in range(N):
            x[n * stride_n:n * stride_n + M] = torch.randn(M).to(torch.bfloat16) * (n + 1)
        mean, var = torch.empty(N, 1), torch.empty(N, 1)
        K._instance_norm_fwd_kernel[(N, 1)](x, x, mean, mean, out, mean, var, 1, M, stride_n, M, 1, 1e-5, 0.0,
            COMPUTE_STATS=True, HAS_W=False, HAS_B=False, HAS_RES=False, ACT=0, BLOCK_C=1, COMPUTE=tl.float32)
        for n in range(N):
            v = x[n * stride_n:n * stride_n + M].float()
            want = (v - v.mean()) / (v.var(unbiased=False) + 1e-5).sqrt()
            assert torch.allclose(mean[n, 0], v.mean(), atol=1e-5), (n, mean[n], v.mean())
            got = out[n * stride_n:n * stride_n + M].float()
            assert (got - want).abs().max() < 0.05, (n, (got - want).abs().max())
    """,
    # Row 2 of a (3, 2**30) tensor: row * cols (one chunk of each row).
    "interpolate": """
        from fastgen.triton_kernels import grad_penalty as K
        rows, cols, B = 3, 2**30, 64
        buf = torch.empty(rows * cols, dtype=torch.bfloat16)  # real = fake = out: out = real
        for r in range(rows):
            buf[r * cols:r * cols + B] = torch.randn(B).to(torch.bfloat16)
        want = [buf[r * cols:r * cols + B].clone() for r in range(rows)]
        alpha = torch.full((rows,), 0.25, dtype=torch.bfloat16)
        K._interpolate_fwd_kernel[(rows, 1)](buf, buf, alpha, buf, cols, CHUNK=B, BLOCK=B, COMPUTE=tl.float32)
        for r in range(rows):
            assert torch.equal(buf[r * cols:r * cols + B], want[r]), r
        buf[2 * cols:2 * cols + B] = 1.0
        K._sum_squares_kernel[(rows, 1)](buf, part := torch.zeros(rows, 1), cols, 1, CHUNK=B, BLOCK=B,
                                         COMPUTE=tl.float32)
        assert part[2, 0].item() == B, part
    """,
    # Image 2 of an NCHW pixel shuffle with 2**30-element output images: (n * C + c) * (Hr * Wr).
    "pixel_shuffle": """
        from fastgen.triton_kernels import pixel_shuffle as K
        N, C, r, H, W = 3, 1, 2, 2**14, 2**14
        small = torch.empty(N * C * r * r * H * W, dtype=torch.bfloat16)
        big = torch.empty(N * C * H * r * W * r, dtype=torch.bfloat16)
        BLOCK_S = 64  # the first 64 output elements of each image: row 0 of the big image
        for n in range(N):
            for k in range(r * r):  # small channel k holds big pixels (oh % r, ow % r) = divmod(k, r)
                base = (n * r * r + k) * H * W
                small[base:base + BLOCK_S] = torch.arange(BLOCK_S) + 1000 * k + 10000 * n
        K._to_big_kernel[(1, 1, N)](small, small, big, C, H, W, r, 0, HAS_PRELU=False, CHANNELS_LAST=False,
                                     BLOCK_C=1, BLOCK_S=BLOCK_S, COMPUTE=tl.float32)
        for n in range(N):
            got = big[n * H * r * W * r:n * H * r * W * r + BLOCK_S].float()
            ow = torch.arange(BLOCK_S)
            want = (ow // r + 1000 * (ow % r) + 10000 * n).to(torch.bfloat16).float()
            assert torch.equal(got, want), (n, got[:8], want[:8])
    """,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_offsets_past_2_31_elements(name):
    code = PRELUDE + textwrap.dedent(CHECKS[name]) + "\nprint('OK')\n"
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), (
        f"exit {done.returncode} (negative: killed by that signal)\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
