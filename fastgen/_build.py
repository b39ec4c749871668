"""The one place that knows fastgen's C++ sources and compiler flags.

Used by setup.py (ahead-of-time build) and by fastgen/_ext.py (JIT fallback), so that
both builds are identical. Keep this module free of heavy imports: setup.py loads it
by path before fastgen itself is importable.
"""
from __future__ import annotations

import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
EXTENSION_NAME = "fastgen._C"

# torch.backends.cpu.get_cpu_capability() -> flags that make at::vec::Vectorized use that
# instruction set. -march=native alone is not enough: ATen's headers pick the vector width
# from the CPU_CAPABILITY_* macros, and without them Vectorized<float> is the 8-wide
# generic fallback.
_CAPABILITY_FLAGS = {
    "AVX512": [
        "-DCPU_CAPABILITY=AVX512",
        "-DCPU_CAPABILITY_AVX512",
        "-mavx512f",
        "-mavx512dq",
        "-mavx512vl",
        "-mavx512bw",
        "-mfma",
    ],
    # -mf16c: ATen's scalar Half <-> float conversions use F16C intrinsics in AVX2 builds.
    "AVX2": ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"],
    "DEFAULT": ["-DCPU_CAPABILITY=DEFAULT"],
}


def sources() -> list[str]:
    """Every C++ translation unit of fastgen._C, sorted so builds are reproducible."""
    return sorted(glob.glob(os.path.join(CSRC, "*.cpp")) + glob.glob(os.path.join(CSRC, "autograd", "*.cpp")))


def header_dirs() -> list[str]:
    return [CSRC]


def cpu_capability() -> str:
    """The capability the build targets: FASTGEN_CPU_CAPABILITY overrides torch's detection."""
    forced = os.environ.get("FASTGEN_CPU_CAPABILITY")
    if forced:
        forced = forced.upper()
        if forced not in _CAPABILITY_FLAGS:
            raise ValueError(
                f"FASTGEN_CPU_CAPABILITY must be one of {sorted(_CAPABILITY_FLAGS)}, got {forced!r}"
            )
        return forced
    import torch

    detected = torch.backends.cpu.get_cpu_capability()
    # Capabilities fastgen has no flags for (e.g. ZVECTOR, SVE256, VSX) build the generic code.
    return detected if detected in _CAPABILITY_FLAGS else "DEFAULT"


def cxx_flags(capability: str | None = None) -> list[str]:
    capability = capability or cpu_capability()
    return [
        "-O3",
        "-fopenmp",  # without it at::parallel_for runs on one thread
        "-fvisibility=hidden",
        # Round every product as written: GCC would otherwise fuse a * b - c into one FMA where
        # the code does not ask for it, and a value recomputed in backward would then differ from
        # the forward's rounded one (at::vec::fmadd still gives an FMA where one is wanted).
        "-ffp-contract=off",
        "-Wno-unknown-pragmas",  # ATen headers carry clang and CUDA pragmas
        *_CAPABILITY_FLAGS[capability],
    ]


def link_flags() -> list[str]:
    return ["-fopenmp"]
