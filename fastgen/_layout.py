"""Memory-layout rules shared by the fake impls and the Triton launchers; they mirror
csrc/common/rows.h so that every backend returns outputs with the same strides."""
from __future__ import annotations

import torch


def is_non_overlapping_and_dense(t: torch.Tensor) -> bool:
    """c10's TensorImpl::is_non_overlapping_and_dense(), which the C++ kernels use."""
    sizes, strides = t.shape, t.stride()
    if len(sizes) == 0:
        return True
    if len(sizes) == 1:
        return sizes[0] < 2 or strides[0] == 1
    # Dims of size >= 2, by increasing stride, must tile memory exactly (size-0/1 dims don't
    # matter). bool() makes each symbolic comparison a guard under torch.compile.
    dims = sorted((d for d in range(len(sizes)) if not bool(sizes[d] < 2)), key=lambda d: strides[d])
    expected = 1
    for d in dims:
        if bool(strides[d] != expected):
            return False
        expected = expected * sizes[d]
    return True


def is_batch_major_dense(t: torch.Tensor) -> bool:
    """Dense, and each batch entry (dim 0) is one contiguous run of numel // B elements
    (contiguous, channels_last, or any other order inside the run)."""
    if not is_non_overlapping_and_dense(t):
        return False
    batch = t.shape[0]
    if batch <= 1:
        return True
    return t.stride(0) == t.numel() // batch


def batch_major(t: torch.Tensor) -> torch.Tensor:
    """`t` if it is batch-major dense, else a contiguous copy: the layout row kernels walk."""
    return t if is_batch_major_dense(t) else t.contiguous()


def in_layout_of(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` with exactly the strides of `like` (a batch-major dense tensor of the same shape)."""
    if t.stride() == like.stride():
        return t
    return torch.empty_like(like).copy_(t)
