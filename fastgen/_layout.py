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


def is_channels_innermost(t: torch.Tensor) -> bool:
    """Dense with dim 1 (channels) innermost, then the spatial dims in order, then the batch:
    channels_last for 4-D, channels_last_3d for 5-D, (N, L, C) memory for 3-D. Size-1 dims
    are ignored, as is_contiguous() does. Used by ops that walk (N, C, *spatial) tensors
    natively in either layout (mirrors channels_innermost in csrc/instance_norm.cpp)."""
    if t.dim() < 3:
        return False
    expected = 1
    for d in [1, *range(t.dim() - 1, 1, -1), 0]:
        if not bool(t.shape[d] == 1) and bool(t.stride(d) != expected):
            return False
        expected = expected * t.shape[d]
    return True


def channel_major_or_innermost(t: torch.Tensor) -> torch.Tensor:
    """`t` if it is contiguous or channels-innermost dense, else a contiguous copy: the two
    layouts per-channel kernels (instance norm) walk natively, keeping the input's layout."""
    return t if t.is_contiguous() or is_channels_innermost(t) else t.contiguous()
