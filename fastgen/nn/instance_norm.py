"""Drop-in InstanceNorm1d/2d/3d with a fused activation and residual add."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F


class _FusedInstanceNorm:
    """Mixin over torch.nn.InstanceNormXd: torch's signature, defaults, state_dict keys (and
    checkpoint loading) and train/eval semantics, plus a fused activation and an optional
    residual added after it: forward(input, residual=None) = act(norm(input)) + residual."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        device=None,
        dtype=None,
        *,
        activation: str | None = None,
        negative_slope: float = 0.01,
    ):
        _checks.check_activation(f"nn.{type(self).__name__}", activation)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.activation = activation
        self.negative_slope = negative_slope

    def _fused(self, input: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        return F.instance_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training or not self.track_running_stats,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
            activation=self.activation,
            negative_slope=self.negative_slope,
            residual=residual,
        )

    def forward(self, input: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input_dim(input)
        feature_dim = input.dim() - self._get_no_batch_dim()
        if input.size(feature_dim) != self.num_features:
            if self.affine:
                raise ValueError(
                    f"expected input's size at dim={feature_dim} to match num_features"
                    f" ({self.num_features}), but got: {input.size(feature_dim)}."
                )
            warnings.warn(
                f"input's size at dim={feature_dim} does not match num_features. You can silence this "
                "warning by not passing in num_features, which is not used because affine=False",
                stacklevel=2,
            )
        if input.dim() == self._get_no_batch_dim():
            res = residual.unsqueeze(0) if residual is not None else None
            return self._fused(input.unsqueeze(0), res).squeeze(0)
        return self._fused(input, residual)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.activation is not None:
            text += f", activation={self.activation!r}"
            if self.activation == "leaky_relu":
                text += f", negative_slope={self.negative_slope}"
        return text


class InstanceNorm1d(_FusedInstanceNorm, nn.InstanceNorm1d):
    """torch.nn.InstanceNorm1d ((N, C, L) or (C, L)) + fused activation and residual."""


class InstanceNorm2d(_FusedInstanceNorm, nn.InstanceNorm2d):
    """torch.nn.InstanceNorm2d ((N, C, H, W) or (C, H, W), contiguous or channels_last) + fused
    activation and residual."""


class InstanceNorm3d(_FusedInstanceNorm, nn.InstanceNorm3d):
    """torch.nn.InstanceNorm3d ((N, C, D, H, W) or (C, D, H, W)) + fused activation and residual."""
