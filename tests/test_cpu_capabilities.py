"""One build, every x86-64 CPU: fastgen._C holds the kernels once per CPU capability and uses
the variant torch uses. The parity subset (tests/cpu_capability_cases.py) runs under every
capability this host can execute, and, where qemu-user is installed (`make test` installs it),
on emulated CPUs without AVX-512 (Haswell: AVX2) and without AVX2 (Sandy Bridge): an AVX-512
instruction leaking into another variant would kill those runs with SIGILL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

import fastgen

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORDER = ["DEFAULT", "AVX2", "AVX512"]
HOST = torch.backends.cpu.get_cpu_capability()
RUNNABLE = ORDER[: ORDER.index(HOST) + 1] if HOST in ORDER else ["DEFAULT"]


def _run(command, timeout=900, **env):
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "FASTGEN_CPU_CAPABILITY")} | env
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _subset(*extra, prefix=()):
    return [
        *prefix,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        os.path.join(HERE, "cpu_capability_cases.py"),
        *extra,
    ]


def test_fastgen_uses_torchs_capability():
    assert "FASTGEN_CPU_CAPABILITY" not in os.environ, "unset FASTGEN_CPU_CAPABILITY to run the suite"
    info = fastgen.build_info()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_capabilities"] == (ORDER if HOST in ORDER else ["DEFAULT"])


@pytest.mark.parametrize("capability", ORDER)
def test_parity_subset_under_each_capability(capability):
    if capability not in RUNNABLE:
        pytest.skip(f"this CPU cannot run {capability} (torch's capability here: {HOST})")
    done = _run(_subset(), ATEN_CPU_CAPABILITY=capability.lower(), FASTGEN_EXPECT_CAPABILITY=capability)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]


def test_override_picks_another_variant():
    done = _run(
        [
            sys.executable,
            "-c",
            "import fastgen; i = fastgen.build_info(); print(i['cpu_capability'], i['float_vector_width'])",
        ],
        FASTGEN_CPU_CAPABILITY="default",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DEFAULT", "8"]


@pytest.mark.parametrize(
    "value,message",
    [
        ("sse9", r"FASTGEN_CPU_CAPABILITY='sse9' cannot be used: .*capability must be one of DEFAULT"),
        ("", None),  # empty: not set
    ],
)
def test_bad_override_is_a_clear_error(value, message):
    done = _run(
        [sys.executable, "-c", "import fastgen; print(fastgen.build_info()['cpu_capability'])"],
        FASTGEN_CPU_CAPABILITY=value,
    )
    if message is None:
        assert done.returncode == 0 and done.stdout.strip() == HOST, done.stderr
        return
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])  # an exception, not a signal
    assert "ValueError" in done.stderr
    import re

    assert re.search(message, done.stderr), done.stderr[-2000:]


def test_selection_is_once_per_process():
    with pytest.raises(ValueError, match="already registered"):
        torch.ops.fastgen._select_cpu_capability("DEFAULT" if HOST != "DEFAULT" else "AVX2")
    assert torch.ops.fastgen._select_cpu_capability(HOST) == HOST  # the same one again: no-op


QEMU = shutil.which("qemu-x86_64")
X86 = HOST in ("AVX2", "AVX512")


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="x86-64 only")
@pytest.mark.parametrize(
    "cpu,capability,selection",
    [
        ("Haswell-v4", "AVX2", []),  # AVX2 + FMA, no AVX-512
        # Sandy Bridge has AVX but no AVX2: the DEFAULT variant. torch's own eager PReLU needs FBGEMM
        # (AVX2) there, so only fastgen-side cases run.
        ("SandyBridge", "DEFAULT", ["-k", "gradcheck or variant"]),
    ],
)
def test_runs_on_emulated_cpus_without_avx512(cpu, capability, selection):
    if QEMU is None:
        pytest.fail("qemu-user is not installed: `apt-get install qemu-user` (make test installs it)")
    done = _run(_subset(*selection, prefix=(QEMU, "-cpu", cpu)), timeout=1200, FASTGEN_EXPECT_CAPABILITY=capability)
    assert done.returncode == 0, f"{cpu}: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_a_capability_the_cpu_lacks_is_a_clear_error():
    if QEMU is None:
        pytest.fail("qemu-user is not installed: `apt-get install qemu-user` (make test installs it)")
    done = _run([QEMU, "-cpu", "Haswell-v4", sys.executable, "-c", "import fastgen"], FASTGEN_CPU_CAPABILITY="avx512")
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "this CPU cannot run the AVX512 kernels (it lacks avx512f" in done.stderr, done.stderr[-2000:]
