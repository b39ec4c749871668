"""fastgen.build_info(): what this installation was built for and can use."""

from __future__ import annotations

import importlib.util

import torch


def _triton_status() -> dict:
    if importlib.util.find_spec("triton") is None:
        return {"available": False, "version": None}
    from importlib.metadata import PackageNotFoundError, version

    try:
        triton_version = version("triton")
    except PackageNotFoundError:  # pragma: no cover - importable but not installed as a dist
        triton_version = None
    # Triton kernels run on CUDA tensors only; without a GPU they are usable only through
    # the interpreter (TRITON_INTERPRET=1), as the tests do.
    return {"available": True, "version": triton_version}


def build_info() -> dict:
    """Version, torch version, the CPU kernels' variant in use (cpu_capability: DEFAULT, AVX2 or
    AVX512, the same as torch's) with its vector width and the variants the build holds, OpenMP
    threads, and whether Triton and CUDA are usable."""
    import fastgen
    from fastgen import _ext

    ops = torch.ops.fastgen
    triton = _triton_status()
    cuda = torch.cuda.is_available()
    return {
        "fastgen": fastgen.__version__,
        "torch": torch.__version__,
        "extension": _ext.load(),
        "cpu_capability": ops._cpu_capability(),
        "float_vector_width": ops._float_vector_width(),
        "cpu_capabilities": list(ops._cpu_capabilities()),
        "openmp": ops._openmp_enabled(),
        "num_threads": ops._num_threads(),
        "triton": triton["version"] if triton["available"] else None,
        "cuda": cuda,
        "triton_kernels_usable": triton["available"] and cuda,
    }
