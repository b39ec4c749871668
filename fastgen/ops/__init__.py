"""Python registrations for the torch.ops.fastgen ops: fake impls (for torch.compile and
meta tensors), autograd, and the CUDA kernels (Triton, imported on first use).

One module per op family; importing this package registers them all. The schemas and
CPU kernels are in csrc/ (loaded by fastgen._ext).
"""
from fastgen.ops import reparam_kl  # noqa: F401
