"""Every Triton kernel compiles ahead of time for sm_90 (PTX and cubin, no GPU needed)."""
import os
import subprocess
import sys

import pytest


def test_every_kernel_compiles_for_sm90():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # tests run interpreted
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, "-m", "fastgen.triton_kernels.aot", "--arch", "90"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    from fastgen.triton_kernels import FAMILIES
    import importlib

    expected = sum(len(importlib.import_module(f"fastgen.triton_kernels.{f}").aot_specs()) for f in FAMILIES)
    compiled = [line for line in done.stdout.splitlines() if line.startswith("sm_90 ")]
    assert len(compiled) == expected, done.stdout
