"""Triton kernels for CUDA tensors, one module per op family (imported as fastgen.triton_kernels).

fastgen.ops imports these lazily, on the first CUDA call, so importing fastgen never needs
Triton or a GPU. Each module's aot_specs() lists its kernel specializations for the
ahead-of-time compile check (python -m fastgen.triton_kernels.aot).
"""

import importlib.util
import pkgutil
import sys


def _require_triton() -> None:
    """Triton is an optional extra (CUDA only): say which one, rather than a bare ModuleNotFoundError."""
    missing = sys.modules.get("triton", False) is None  # blocked, as tests simulate a machine without it
    if missing or importlib.util.find_spec("triton") is None:
        raise ImportError(
            "fastgen.triton_kernels (fastgen's CUDA kernels) needs Triton, which is not installed: "
            "pip install 'fastgen[cuda]' (triton==3.9.0)"
        )


_require_triton()

# Every kernel module (aot.py is the compile tool, not a family).
FAMILIES = tuple(
    sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "aot" and not m.name.startswith("_"))
)
