"""The parity rule: fastgen's error against a float64 reference may be at most about twice
eager PyTorch's own error in the same dtype, plus a small floor."""
from __future__ import annotations

import torch

# Floor, in units of the dtype's epsilon times the reference's magnitude.
FLOOR_ULPS = 8


def _max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    if x.numel() == 0:
        return 0.0
    return (x.double() - ref.double()).abs().max().item()


def assert_parity(fast: torch.Tensor, eager: torch.Tensor, ref64: torch.Tensor, *, factor: float = 2.0,
                  floor_ulps: float = FLOOR_ULPS, what: str = "", scale: float | None = None) -> None:
    """scale sets the magnitude the floor is relative to (default: the reference's largest
    value, at least 1): a tensor that is a small part of a larger computation (one layer's
    gradient in a network) rounds relative to that computation, not to itself.

    floor_ulps widens the floor only for a computation that amplifies rounding by a known
    factor: eager's error on one small instance is a lucky or unlucky draw of that same
    amplified noise (e.g. margin softmax logits are s * cos: an ulp of a cosine is s ulps of
    a logit, whichever order the roundings happen in)."""
    assert fast.shape == ref64.shape, f"{what}: shape {tuple(fast.shape)} != {tuple(ref64.shape)}"
    assert fast.dtype == eager.dtype, f"{what}: dtype {fast.dtype} != eager's {eager.dtype}"
    dtype = eager.dtype
    nan_fast, nan_ref = torch.isnan(fast.double()), torch.isnan(ref64.double())
    assert torch.equal(nan_fast, nan_ref), f"{what}: NaN pattern differs from the reference"
    fast, eager, ref64 = (t.double().nan_to_num() for t in (fast, eager, ref64))
    if scale is None:
        scale = max(1.0, ref64.abs().max().item()) if ref64.numel() else 1.0
    floor = floor_ulps * torch.finfo(dtype).eps * scale
    err_fast, err_eager = _max_err(fast, ref64), _max_err(eager, ref64)
    assert err_fast <= factor * err_eager + floor, (
        f"{what}: fastgen error {err_fast:.3g} > {factor} x eager error {err_eager:.3g} + floor {floor:.3g}"
    )
