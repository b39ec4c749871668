from __future__ import annotations

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F


class AffineCoupling(nn.Module):
    """RealNVP affine coupling layer: forward(x) -> (y, logdet), inverse(y) -> (x, logdet).

    `conditioner` sees the conditioning part of x (the conditioning half for mask="channel";
    x with the transformed elements zeroed for mask="checkerboard") and returns s and t, either
    as a pair or as one tensor holding s then t along dim 1 (chunked in two). The coupling
    itself is fastgen.functional.affine_coupling: one pass, log-determinant included.

    learn_scale=True adds a per-channel parameter `scale` (of the channels s has: channels // 2
    for "channel", channels for "checkerboard"), initialised to zero, and the kernel uses
    s_eff = scale * tanh(s), as in the official RealNVP code; `channels` (x's dim 1) is then
    required to size it.
    """

    def __init__(
        self,
        conditioner: nn.Module,
        mask: str = "channel",
        mask_parity: int = 0,
        learn_scale: bool = True,
        *,
        channels: int | None = None,
    ):
        super().__init__()
        fn = "nn.AffineCoupling"
        if mask not in F._COUPLING_MASKS:
            _checks.fail(fn, f"mask must be 'channel' or 'checkerboard', got {mask!r}")
        if mask_parity not in (0, 1) or isinstance(mask_parity, bool):
            _checks.fail(fn, f"mask_parity must be 0 or 1, got {mask_parity!r}")
        if channels is not None and (channels <= 0 or (mask == "channel" and channels % 2)):
            _checks.fail(fn, f"channels must be a positive{' even' if mask == 'channel' else ''} int, got {channels}")
        self.conditioner = conditioner
        self.mask = mask
        self.mask_parity = mask_parity
        self.channels = channels
        if learn_scale:
            if channels is None:
                _checks.fail(fn, "channels (the size of x's dim 1) must be given when learn_scale=True")
            self.scale = nn.Parameter(torch.zeros(channels // 2 if mask == "channel" else channels))
        else:
            self.register_parameter("scale", None)

    # The two pieces an eager twin replaces (fastgen.reference.coupling.AffineCoupling).
    def _couple(self, x, s, t, scale, inverse):
        return F.affine_coupling(x, s, t, mask=self.mask, mask_parity=self.mask_parity, scale=scale, inverse=inverse)

    def _conditioning_mask(self, x):
        # 1 on the conditioning elements: those the coupling with the other parity transforms.
        return F.checkerboard_mask(x.shape[2], x.shape[3], 1 - self.mask_parity, device=x.device, dtype=x.dtype)

    def _conditioning_part(self, x):
        if self.mask == "channel":
            half = x.shape[1] // 2
            return x.narrow(1, 0 if self.mask_parity == 0 else half, half)
        return x * self._conditioning_mask(x)

    def _run(self, x, inverse):
        out = self.conditioner(self._conditioning_part(x))
        s, t = out if isinstance(out, (tuple, list)) else out.chunk(2, dim=1)
        scale = None if self.scale is None else self.scale.view(-1, *([1] * (s.dim() - 2)))
        return self._couple(x, s, t, scale, inverse)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(x, False)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(y, True)

    def extra_repr(self) -> str:
        return (
            f"mask={self.mask!r}, mask_parity={self.mask_parity}, learn_scale={self.scale is not None}, "
            f"channels={self.channels}"
        )
