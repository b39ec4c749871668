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


def assert_parity(
    fast: torch.Tensor,
    eager: torch.Tensor,
    ref64: torch.Tensor,
    *,
    factor: float = 2.0,
    floor_ulps: float = FLOOR_ULPS,
    what: str = "",
    scale: float | None = None,
) -> None:
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


def assert_parity_tree(fast, eager, ref64, *, what: str = "", **kwargs) -> None:
    """assert_parity on each tensor of matching sequences: an op's tuple of outputs or gradients
    (None where an output mask skipped one: None on every side). For a second implementation
    of a kernel (Triton against the CPU kernel, a sharded head against the whole one), eager is
    the first implementation in the same dtype and ref64 its float64 run on the same inputs."""
    fast, eager, ref64 = (list(t) if isinstance(t, (tuple, list)) else [t] for t in (fast, eager, ref64))
    assert len(fast) == len(eager) == len(ref64), f"{what}: {len(fast)}, {len(eager)}, {len(ref64)} outputs"
    for i, (f, e, r) in enumerate(zip(fast, eager, ref64)):
        name = f"{what} output {i}" if len(fast) > 1 else what
        if f is None or e is None or r is None:
            assert f is None and e is None and r is None, f"{name}: None on one side only"
            continue
        assert_parity(f, e, r, what=name, **kwargs)


def assert_kernels_agree(got, want, ref64, *, what: str = "", **kwargs) -> None:
    """A second implementation of a kernel (Triton) against the first (the CPU kernel) on the same
    inputs, each a tensor or a sequence of them: float32, bfloat16 and float16 results under the
    parity rule, ref64 being the first kernel's float64 run. A float64 result has nothing above it
    to measure against: the two agree to 1e-5, far above float64 rounding on any machine (and
    above the float32 random draws Triton makes for a float64 result). kwargs go to assert_parity."""
    got, want, ref64 = (list(t) if isinstance(t, (tuple, list)) else [t] for t in (got, want, ref64))
    assert len(got) == len(want) == len(ref64), f"{what}: {len(got)}, {len(want)}, {len(ref64)} outputs"
    for i, (a, b, r) in enumerate(zip(got, want, ref64)):
        name = f"{what} output {i}" if len(got) > 1 else what
        if b is not None and b.dtype == torch.float64:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
        else:
            assert_parity_tree(a, b, r, what=name, **kwargs)
