"""Loads fastgen._C, the C++ CPU kernels, which registers every fastgen op with torch.

`pip install --no-build-isolation -e .` builds fastgen._C ahead of time. When it is missing
(a source checkout that was never built, or FASTGEN_FORCE_JIT=1), the same sources are
compiled now with the same flags (fastgen/_build.py) by torch.utils.cpp_extension.load.
"""
from __future__ import annotations

import os

import torch  # noqa: F401  (fastgen._C links against libtorch: load it first)

_how_loaded: str | None = None


def load() -> str:
    """Registers the ops once; returns "prebuilt" or "jit"."""
    global _how_loaded
    if _how_loaded is not None:
        return _how_loaded
    if os.environ.get("FASTGEN_FORCE_JIT") != "1":
        try:
            from fastgen import _C  # noqa: F401  (import registers the ops)

            _how_loaded = "prebuilt"
            return _how_loaded
        except ModuleNotFoundError:
            pass  # not built: JIT-build below. Any other ImportError is a broken build: raise it.
    from torch.utils.cpp_extension import load as jit_load

    from fastgen import _build

    jit_load(
        name="fastgen_C",
        sources=_build.sources(),
        extra_cflags=_build.cxx_flags(),
        extra_ldflags=_build.link_flags(),
        extra_include_paths=_build.header_dirs(),
        is_python_module=False,
        verbose=os.environ.get("FASTGEN_VERBOSE_BUILD") == "1",
    )
    _how_loaded = "jit"
    return _how_loaded
