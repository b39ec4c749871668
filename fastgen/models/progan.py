"""Progressive GAN (Karras et al., 2018): a generator and a discriminator that grow from 4x4 by
doubling the resolution, built from pixel norm (fused), minibatch standard deviation,
equalized-learning-rate convolutions and the fade-in blend (fused) that phases in each new
resolution; trained with WGAN-GP plus a small drift term."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as TF
from torch import nn

from fastgen import _checks
from fastgen import nn as fnn
from fastgen.models.gan import GANLayers, _GANModule


def _stages(fn: str, resolution: int) -> int:
    if not (isinstance(resolution, int) and resolution >= 4 and resolution & (resolution - 1) == 0):
        _checks.fail(fn, f"resolution must be a power of two >= 4, got {resolution!r}")
    return int(math.log2(resolution)) - 1  # stage 0 is 4x4


class _Progressive(_GANModule):
    def __init__(self, resolution: int, fmap_base: int, fmap_max: int, layers: GANLayers | None):
        super().__init__(layers)
        self.resolution = resolution
        self.num_stages = _stages(type(self).__name__, resolution)
        self.fmap_base, self.fmap_max = fmap_base, fmap_max

    def features(self, stage: int) -> int:
        """Feature maps at stage s (side 4 * 2**s): min(fmap_base / 2**(s + 1), fmap_max)."""
        return max(1, min(self.fmap_base // 2 ** (stage + 1), self.fmap_max))

    def _check_stage(self, stage, alpha) -> int:
        fn = type(self).__name__
        stage = self.num_stages - 1 if stage is None else stage
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < self.num_stages:
            _checks.fail(fn, f"stage must be an int in [0, {self.num_stages}), got {stage!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            _checks.fail(fn, f"alpha must be a number in [0, 1], got {alpha!r}")
        return stage


class ProGANGenerator(_Progressive):
    """z (B, latent_dim) -> image at stage `stage` (side 4 * 2**stage). While a new stage fades in
    (alpha < 1), its output is blended with the upsampled output of the previous stage."""

    def __init__(
        self,
        latent_dim: int = 512,
        resolution: int = 1024,
        channels: int = 3,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        *,
        layers: GANLayers | None = None,
    ):
        super().__init__(resolution, fmap_base, fmap_max, layers)
        self.latent_dim = latent_dim
        PixelNorm = self.layers.PixelNorm
        f0 = self.features(0)
        self.latent_norm = PixelNorm()
        # The 4x4 "transposed conv" from the latent is a dense layer (gain sqrt(2)/4, as the paper's code).
        self.dense = fnn.EqualizedLinear(latent_dim, f0 * 16, gain=math.sqrt(2) / 4)
        self.initial = nn.Sequential(
            nn.LeakyReLU(0.2), PixelNorm(), fnn.EqualizedConv2d(f0, f0, 3, padding=1), nn.LeakyReLU(0.2), PixelNorm()
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                fnn.EqualizedConv2d(self.features(s - 1), self.features(s), 3, padding=1),
                nn.LeakyReLU(0.2),
                PixelNorm(),
                fnn.EqualizedConv2d(self.features(s), self.features(s), 3, padding=1),
                nn.LeakyReLU(0.2),
                PixelNorm(),
            )
            for s in range(1, self.num_stages)
        )
        self.to_rgb = nn.ModuleList(
            fnn.EqualizedConv2d(self.features(s), channels, 1, gain=1.0) for s in range(self.num_stages)
        )

    def forward(self, z: torch.Tensor, stage: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        stage = self._check_stage(stage, alpha)
        h = self.dense(self.latent_norm(z.reshape(z.shape[0], -1))).reshape(z.shape[0], self.features(0), 4, 4)
        h = self.initial(h)
        previous = h
        for s in range(1, stage + 1):
            previous = h
            h = self.blocks[s - 1](TF.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.to_rgb[stage](h)
        if stage > 0 and alpha < 1:
            old = TF.interpolate(self.to_rgb[stage - 1](previous), scale_factor=2.0, mode="nearest")
            out = self.layers.fade_in(out, old, alpha)
        return out


class ProGANDiscriminator(_Progressive):
    """image at stage `stage` -> score (B,). While a new stage fades in (alpha < 1), its first
    block's output is blended with the previous stage's input path on the downsampled image.
    The 4x4 head: minibatch standard deviation, a 3x3 and a 4x4 conv, and a linear layer."""

    def __init__(
        self,
        resolution: int = 1024,
        channels: int = 3,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        group_size: int = 4,
        *,
        layers: GANLayers | None = None,
    ):
        super().__init__(resolution, fmap_base, fmap_max, layers)
        f0 = self.features(0)
        self.from_rgb = nn.ModuleList(
            nn.Sequential(fnn.EqualizedConv2d(channels, self.features(s), 1), nn.LeakyReLU(0.2))
            for s in range(self.num_stages)
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(
                fnn.EqualizedConv2d(self.features(s), self.features(s), 3, padding=1),
                nn.LeakyReLU(0.2),
                fnn.EqualizedConv2d(self.features(s), self.features(s - 1), 3, padding=1),
                nn.LeakyReLU(0.2),
                nn.AvgPool2d(2),
            )
            for s in range(1, self.num_stages)
        )
        self.head = nn.Sequential(
            fnn.MinibatchStdDev(group_size),
            fnn.EqualizedConv2d(f0 + 1, f0, 3, padding=1),
            nn.LeakyReLU(0.2),
            fnn.EqualizedConv2d(f0, f0, 4),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            fnn.EqualizedLinear(f0, 1, gain=1.0),
        )

    def forward(self, x: torch.Tensor, stage: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        stage = self._check_stage(stage, alpha)
        h = self.from_rgb[stage](x)
        if stage > 0:
            h = self.blocks[stage - 1](h)
            if alpha < 1:
                h = self.layers.fade_in(h, self.from_rgb[stage - 1](TF.avg_pool2d(x, 2)), alpha)
            for s in range(stage - 1, 0, -1):
                h = self.blocks[s - 1](h)
        return self.head(h).reshape(-1)


class ProGAN(_GANModule):
    """A Progressive GAN generator and discriminator with the paper's loss: WGAN-GP (weight 10,
    target 1) plus drift * E[D(real)^2] (drift 0.001) on the critic."""

    def __init__(
        self,
        latent_dim: int = 512,
        resolution: int = 1024,
        channels: int = 3,
        fmap_base: int = 8192,
        fmap_max: int = 512,
        group_size: int = 4,
        *,
        gp_weight: float = 10.0,
        drift: float = 1e-3,
    ):
        super().__init__(None)
        self.latent_dim, self.gp_weight, self.drift = latent_dim, gp_weight, drift
        self.generator = ProGANGenerator(latent_dim, resolution, channels, fmap_base, fmap_max, layers=self.layers)
        self.discriminator = ProGANDiscriminator(
            resolution, channels, fmap_base, fmap_max, group_size, layers=self.layers
        )

    def critic_loss(
        self,
        real: torch.Tensor,
        z: torch.Tensor,
        stage: int | None = None,
        alpha: float = 1.0,
        gp_alpha=None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """gp_alpha: the interpolation weights of the penalty (drawn when None); alpha: the fade-in."""
        fake = self.generator(z, stage, alpha).detach()
        d_real = self.discriminator(real, stage, alpha)
        wasserstein = self.layers.discriminator_loss(d_real, self.discriminator(fake, stage, alpha), "wasserstein")
        penalty = self.layers.gradient_penalty(
            lambda x: self.discriminator(x, stage, alpha),
            real,
            fake,
            weight=self.gp_weight,
            alpha=gp_alpha,
            generator=generator,
        )
        return wasserstein + penalty + self.drift * d_real.square().mean()

    def generator_loss(self, z: torch.Tensor, stage: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        return self.layers.generator_loss(
            self.discriminator(self.generator(z, stage, alpha), stage, alpha), "wasserstein"
        )
