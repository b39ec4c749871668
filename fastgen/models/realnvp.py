"""RealNVP (Dinh, Sohl-Dickstein & Bengio, "Density estimation using Real NVP"): the
multi-scale image flow with ResNet s/t conditioners, and a small 2-D flow for toy data; each
coupling is fastgen's fused affine coupling with its log-determinant."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as TF
from torch import nn

from fastgen import _checks
from fastgen import functional as F
from fastgen import nn as fnn


@dataclass(frozen=True)
class RealNVPLayers:
    """What a RealNVP is assembled from besides torch.nn. fastgen's models use FASTGEN_LAYERS;
    their eager twins (fastgen/reference/models/realnvp.py) the same classes with plain-torch
    layers, so both share parameters and state_dict keys by construction."""

    AffineCoupling: type  # (conditioner, mask, mask_parity, learn_scale, channels=) -> module
    squeeze2d: Callable  # (x) -> space-to-depth by 2
    unsqueeze2d: Callable
    dequantize: Callable  # (x, noise, n_bins=, generator=) -> x in [0, 1)
    logit_transform: Callable  # (x, alpha=, inverse=) -> (y, logdet)


FASTGEN_LAYERS = RealNVPLayers(
    AffineCoupling=fnn.AffineCoupling,
    squeeze2d=F.squeeze2d,
    unsqueeze2d=F.unsqueeze2d,
    dequantize=F.dequantize,
    logit_transform=F.logit_transform,
)

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample, summed over the non-batch dims."""
    return -0.5 * (z.pow(2) + _LOG_2PI).flatten(1).sum(1)


class ResidualBlock(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        h = self.conv1(TF.relu(self.norm1(x)))
        return x + self.conv2(TF.relu(self.norm2(h)))


class ResNetST(nn.Module):
    """RealNVP's s/t conditioner: conv in, residual blocks, BN-ReLU, conv out to s and t
    (2 * out_channels channels, s first)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, num_blocks: int):
        super().__init__()
        self.in_conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(mid_channels) for _ in range(num_blocks)])
        self.out_norm = nn.BatchNorm2d(mid_channels)
        self.out_conv = nn.Conv2d(mid_channels, 2 * out_channels, 3, padding=1)

    def forward(self, x):
        return self.out_conv(TF.relu(self.out_norm(self.blocks(self.in_conv(x)))))


class _Scale(nn.Module):
    """One scale: 3 checkerboard couplings, squeeze, 3 channel-wise couplings (the caller then
    factors out half the channels)."""

    def __init__(self, coupling: type, channels: int, mid_channels: int, num_blocks: int):
        super().__init__()
        self.in_couplings = nn.ModuleList(
            coupling(ResNetST(channels, mid_channels, channels, num_blocks), "checkerboard", k % 2, channels=channels)
            for k in range(3)
        )
        self.out_couplings = nn.ModuleList(
            coupling(
                ResNetST(2 * channels, mid_channels, 2 * channels, num_blocks), "channel", k % 2, channels=4 * channels
            )
            for k in range(3)
        )


class RealNVP(nn.Module):
    """The multi-scale RealNVP for images in [0, 1].

    Data are dequantized (uniform noise, n_bins levels) and mapped to logit space
    (logit(alpha + (1 - 2 alpha) x)); then, per scale, 3 checkerboard couplings, a squeeze,
    3 channel-wise couplings and half the channels factored out; the last scale is 4
    checkerboard couplings. Every conditioner is a ResNet (num_blocks blocks of mid_channels).
    The defaults are the paper's CIFAR-10 model (64 channels, 8 blocks, downscaling once);
    RealNVP.small() trains on 8x8 or 28x28 images on a CPU.

    forward(x) -> (z, logdet): x in (0, 1) (already dequantized) to z (B, D), logdet including
    the logit's; inverse(z) -> (x, logdet); log_prob(x) dequantizes first (noise from
    `generator` unless `noise` is given); bits_per_dim(x) and loss(x) (mean bits/dim) follow.
    """

    layers: RealNVPLayers = FASTGEN_LAYERS

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_scales: int = 2,
        mid_channels: int = 64,
        num_blocks: int = 8,
        *,
        alpha: float = 0.05,
        n_bins: int = 256,
    ):
        super().__init__()
        fn = type(self).__name__
        if num_scales < 1:
            _checks.fail(fn, f"num_scales must be at least 1, got {num_scales}")
        if image_size % (2 ** (num_scales - 1)) or image_size < 2**num_scales:
            _checks.fail(
                fn,
                f"image_size must be a multiple of 2**(num_scales - 1) = {2 ** (num_scales - 1)} and at "
                f"least {2**num_scales}, got {image_size}",
            )
        self.image_shape = (in_channels, image_size, image_size)
        self.alpha, self.n_bins = alpha, n_bins
        coupling = self.layers.AffineCoupling
        channels, size = in_channels, image_size
        self.scales = nn.ModuleList()
        self._z_shapes = []
        for _ in range(num_scales - 1):
            self.scales.append(_Scale(coupling, channels, mid_channels, num_blocks))
            channels, size = 2 * channels, size // 2
            self._z_shapes.append((channels, size, size))  # factored out
        self.final_couplings = nn.ModuleList(
            coupling(ResNetST(channels, mid_channels, channels, num_blocks), "checkerboard", k % 2, channels=channels)
            for k in range(4)
        )
        self._z_shapes.append((channels, size, size))

    @classmethod
    def small(cls, in_channels: int = 1, image_size: int = 28, **kwargs):
        """A CPU-sized RealNVP (2 scales, 16 channels, 2 residual blocks) for 8x8 or 28x28 images."""
        kwargs = {"num_scales": 2, "mid_channels": 16, "num_blocks": 2, **kwargs}
        return cls(in_channels, image_size, **kwargs)

    @property
    def num_dims(self) -> int:
        return math.prod(self.image_shape)

    def _check_images(self, x, name="x"):
        fn = type(self).__name__
        _checks.check_floating(fn, name, x)
        if tuple(x.shape[1:]) != self.image_shape or x.dim() != 4:
            _checks.fail(
                fn, f"{name} must have shape (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_images(x)
        h, logdet = self.layers.logit_transform(x, alpha=self.alpha)
        zs = []
        for scale in self.scales:
            for coupling in scale.in_couplings:
                h, ld = coupling(h)
                logdet = logdet + ld
            h = self.layers.squeeze2d(h)
            for coupling in scale.out_couplings:
                h, ld = coupling(h)
                logdet = logdet + ld
            z, h = h.chunk(2, dim=1)[::-1]  # factor out the second half
            zs.append(z)
        for coupling in self.final_couplings:
            h, ld = coupling(h)
            logdet = logdet + ld
        zs.append(h)
        return torch.cat([z.flatten(1) for z in zs], dim=1), logdet

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fn = type(self).__name__
        _checks.check_floating(fn, "z", z)
        if z.dim() != 2 or z.shape[1] != self.num_dims:
            _checks.fail(fn, f"z must have shape (B, {self.num_dims}), got {tuple(z.shape)}")
        sizes = [math.prod(s) for s in self._z_shapes]
        parts = [p.reshape(z.shape[0], *s) for p, s in zip(z.split(sizes, dim=1), self._z_shapes)]
        h = parts[-1]
        logdet = z.new_zeros(z.shape[0], dtype=_checks.acc_dtype(z.dtype))
        for coupling in reversed(self.final_couplings):
            h, ld = coupling.inverse(h)
            logdet = logdet + ld
        for scale, factored in zip(reversed(self.scales), reversed(parts[:-1])):
            h = torch.cat([h, factored], dim=1)
            for coupling in reversed(scale.out_couplings):
                h, ld = coupling.inverse(h)
                logdet = logdet + ld
            h = self.layers.unsqueeze2d(h)
            for coupling in reversed(scale.in_couplings):
                h, ld = coupling.inverse(h)
                logdet = logdet + ld
        x, ld = self.layers.logit_transform(h, alpha=self.alpha, inverse=True)
        return x, logdet + ld

    def log_prob(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, generator=None, *, dequantize: bool = True
    ) -> torch.Tensor:
        """log-density (nats) per sample of x (B, C, H, W) in [0, 1], dequantized first unless
        dequantize=False (then x must be continuous data in (0, 1))."""
        if dequantize:
            self._check_images(x)
            x = self.layers.dequantize(x, noise, n_bins=self.n_bins, generator=generator)
        z, logdet = self(x)
        return standard_normal_log_prob(z) + logdet

    def bits_per_dim(self, x: torch.Tensor, noise: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        return F.bits_per_dim(self.log_prob(x, noise, generator), self.num_dims, n_bins=self.n_bins)

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        """Mean bits per dimension over the batch."""
        return self.bits_per_dim(x, noise, generator).mean()

    @torch.no_grad()
    def sample(self, n: int, generator=None, *, temperature: float = 1.0) -> torch.Tensor:
        ref = next(self.parameters())
        z = torch.randn(n, self.num_dims, generator=generator, device=ref.device, dtype=ref.dtype) * temperature
        return self.inverse(z)[0]


class RealNVP2d(nn.Module):
    """A small RealNVP for 2-D (or any even-dimensional) toy data such as two moons:
    num_couplings channel-wise affine couplings with alternating halves, each conditioned by an
    MLP, and a standard normal base. forward(x) -> (z, logdet), inverse(z) -> (x, logdet),
    log_prob(x), loss(x) (mean negative log-likelihood), sample(n)."""

    layers: RealNVPLayers = FASTGEN_LAYERS

    def __init__(self, features: int = 2, hidden: int = 64, num_couplings: int = 8, num_hidden_layers: int = 2):
        super().__init__()
        if features < 2 or features % 2:
            _checks.fail(type(self).__name__, f"features must be an even number >= 2, got {features}")
        self.features = features
        half = features // 2

        def mlp():
            dims = [half] + [hidden] * num_hidden_layers
            modules = []
            for a, b in zip(dims[:-1], dims[1:]):
                modules += [nn.Linear(a, b), nn.ReLU()]
            return nn.Sequential(*modules, nn.Linear(dims[-1], 2 * half))

        self.couplings = nn.ModuleList(
            self.layers.AffineCoupling(mlp(), "channel", k % 2, channels=features) for k in range(num_couplings)
        )

    def _check(self, x, name):
        fn = type(self).__name__
        _checks.check_floating(fn, name, x)
        if x.dim() != 2 or x.shape[1] != self.features:
            _checks.fail(fn, f"{name} must have shape (B, {self.features}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x, "x")
        logdet = x.new_zeros(x.shape[0], dtype=_checks.acc_dtype(x.dtype))
        for coupling in self.couplings:
            x, ld = coupling(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(z, "z")
        logdet = z.new_zeros(z.shape[0], dtype=_checks.acc_dtype(z.dtype))
        for coupling in reversed(self.couplings):
            z, ld = coupling.inverse(z)
            logdet = logdet + ld
        return z, logdet

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z, logdet = self(x)
        return standard_normal_log_prob(z) + logdet

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, generator=None) -> torch.Tensor:
        ref = next(self.parameters())
        z = torch.randn(n, self.features, generator=generator, device=ref.device, dtype=ref.dtype)
        return self.inverse(z)[0]
