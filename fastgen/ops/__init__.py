"""Python registrations for the torch.ops.fastgen ops: fake impls (for torch.compile and
meta tensors) and the CUDA kernels (Triton, imported on first use). The autograd is C++
(csrc/autograd/<family>.cpp).

One module per op family (fastgen/ops/<family>.py); importing this package imports them all,
which registers everything. The schemas and CPU kernels are in csrc/ (loaded by fastgen._ext).
"""

import importlib
import pkgutil

FAMILIES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))

for _family in FAMILIES:
    importlib.import_module(f"{__name__}.{_family}")
