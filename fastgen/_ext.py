"""Loads fastgen._C, the C++ CPU kernels, registers every fastgen op with torch, and picks the
CPU kernels' variant (DEFAULT, AVX2 or AVX512) that matches torch's own.

`pip install --no-build-isolation -e .` (`make install`) builds fastgen._C ahead of time. When
it is missing (a source checkout that was never built, or FASTGEN_FORCE_JIT=1), the same
sources are compiled now with the same flags by fastgen/_build.py, into
$TORCH_EXTENSIONS_DIR/fastgen (default ~/.cache/torch_extensions/fastgen).
"""

from __future__ import annotations

import os

import torch  # fastgen._C links against libtorch: load it first

_how_loaded: str | None = None


def load() -> str:
    """Registers the ops and the CPU kernels once; returns "prebuilt" or "jit"."""
    global _how_loaded
    if _how_loaded is not None:
        return _how_loaded
    how = None
    if os.environ.get("FASTGEN_FORCE_JIT") != "1":
        try:
            from fastgen import _C  # noqa: F401  (loading registers the schemas)

            how = "prebuilt"
        except ModuleNotFoundError:
            pass  # not built: JIT-build below. Any other ImportError is a broken build: raise it.
    if how is None:
        from fastgen import _build

        cache = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "torch_extensions"
        )
        library = _build.build_library(
            os.path.join(cache, "fastgen"), verbose=os.environ.get("FASTGEN_VERBOSE_BUILD") == "1"
        )
        torch.ops.load_library(library)
        how = "jit"
    capability = cpu_capability()
    try:
        torch.ops.fastgen._select_cpu_capability(capability)
    except ValueError as error:
        forced = os.environ.get("FASTGEN_CPU_CAPABILITY")
        if forced:
            raise ValueError(f"FASTGEN_CPU_CAPABILITY={forced!r} cannot be used: {error}") from None
        raise
    _how_loaded = how
    return how


def cpu_capability() -> str:
    """The CPU kernels' variant to use: FASTGEN_CPU_CAPABILITY if set, else torch's own
    (torch.backends.cpu.get_cpu_capability(), which honours ATEN_CPU_CAPABILITY), so that fastgen
    and torch always run the same instruction set. Capabilities fastgen has no variant for
    (ZVECTOR, VSX, SVE256, ...) use the generic one."""
    forced = os.environ.get("FASTGEN_CPU_CAPABILITY")
    if forced:
        return forced.upper()  # checked by fastgen::_select_cpu_capability: a clear error if unusable
    available = torch.ops.fastgen._cpu_capabilities()
    detected = torch.backends.cpu.get_cpu_capability()
    return detected if detected in available else "DEFAULT"
