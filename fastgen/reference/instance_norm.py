"""Eager reference for fused instance norm (+activation, +residual): torch.nn.functional
instance_norm, then the activation, then the residual add, as a user writes it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _activate(y: torch.Tensor, activation: str | None, negative_slope: float) -> torch.Tensor:
    if activation == "relu":
        return F.relu(y)
    if activation == "leaky_relu":
        return F.leaky_relu(y, negative_slope)
    return y


def instance_norm(
    input,
    running_mean=None,
    running_var=None,
    weight=None,
    bias=None,
    use_input_stats=True,
    momentum=0.1,
    eps=1e-5,
    *,
    activation=None,
    negative_slope=0.01,
    residual=None,
):
    y = _activate(
        F.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats, momentum, eps),
        activation,
        negative_slope,
    )
    return y if residual is None else y + residual


class _EagerInstanceNorm:
    """Eager twin of fastgen.nn.InstanceNormXd: torch's module, then the activation and the
    residual as separate ops."""

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=False,
        track_running_stats=False,
        device=None,
        dtype=None,
        *,
        activation=None,
        negative_slope=0.01,
    ):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.activation = activation
        self.negative_slope = negative_slope

    def forward(self, input, residual=None):
        y = _activate(super().forward(input), self.activation, self.negative_slope)
        return y if residual is None else y + residual


class InstanceNorm1d(_EagerInstanceNorm, nn.InstanceNorm1d):
    pass


class InstanceNorm2d(_EagerInstanceNorm, nn.InstanceNorm2d):
    pass


class InstanceNorm3d(_EagerInstanceNorm, nn.InstanceNorm3d):
    pass
