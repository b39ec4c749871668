"""fastgen: fused CPU (C++) and CUDA (Triton) kernels for generative models in PyTorch.

Importing fastgen registers the ``torch.ops.fastgen`` ops; it needs neither a GPU nor Triton
(Triton is imported only when a CUDA tensor reaches a fastgen op).
"""

from __future__ import annotations

__version__ = "0.1.0"

from fastgen import _ext

_ext.load()

# ops: the fake impls and CUDA registrations of the ops _ext.load() registered.
from fastgen import functional, nn, ops  # noqa: E402,F401
from fastgen._info import build_info  # noqa: E402

__all__ = ["build_info", "functional", "nn", "models", "__version__"]

# WGAN critic recipes on the gradient-penalty ops (fastgen/grad_penalty.py)
from fastgen.grad_penalty import clip_weights_, gradient_penalty, r1_regularization  # noqa: E402

__all__ += ["gradient_penalty", "r1_regularization", "clip_weights_"]

# Face recognition: fastgen.distributed
from fastgen import distributed  # noqa: E402,F401  (model-parallel margin loss on torch.distributed)

__all__ += ["distributed"]


def __getattr__(name):
    # fastgen.models is imported on first use: it is not needed to use the ops.
    if name == "models":
        import importlib

        return importlib.import_module("fastgen.models")
    raise AttributeError(f"module 'fastgen' has no attribute {name!r}")
