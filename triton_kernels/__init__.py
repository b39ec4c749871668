"""Triton kernels for CUDA tensors, one module per op family (imported as fastgen.triton_kernels).

fastgen.ops imports these lazily, on the first CUDA call, so importing fastgen never needs
Triton or a GPU. Each module's aot_specs() lists its kernel specializations for the
ahead-of-time compile check (python -m fastgen.triton_kernels.aot).
"""
import pkgutil

# Every kernel module (aot.py is the compile tool, not a family).
FAMILIES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "aot" and not m.name.startswith("_")))
