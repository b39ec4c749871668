"""SRGAN (Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network"): the SRResNet generator, the SRGAN discriminator and the SRGAN loss.

The generator's PReLUs and its upsampling tails (conv -> PixelShuffle -> PReLU) run on fastgen's
fused pixel_shuffle kernels; convolutions and batch norm are torch's, as in the eager twin
(fastgen/reference/models/srgan.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fastgen import nn as fnn


@dataclass(frozen=True)
class SRGANLayers:
    """The fused layers SRGAN is assembled from. fastgen's models use FASTGEN_LAYERS; their eager
    twins are the same classes with plain-torch layers (identical state_dict keys)."""

    PReLU: type  # (num_parameters=1, init=0.25) -> nn.PReLU-like module
    PixelShufflePReLU: type  # (upscale_factor, num_parameters=1, init=0.25) -> PixelShuffle then PReLU


FASTGEN_LAYERS = SRGANLayers(PReLU=fnn.PReLU, PixelShufflePReLU=fnn.PixelShufflePReLU)


class ResidualBlock(nn.Module):
    """conv3x3 - BN - PReLU - conv3x3 - BN, plus the input."""

    def __init__(self, channels: int, layers: SRGANLayers):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = layers.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class UpsampleBlock(nn.Module):
    """conv3x3 to channels * r**2, then PixelShuffle(r) and PReLU (one fused layer)."""

    def __init__(self, channels: int, upscale_factor: int, layers: SRGANLayers):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * upscale_factor**2, 3, padding=1)
        self.shuffle = layers.PixelShufflePReLU(upscale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def _upscale_steps(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2 or scale & (scale - 1):
        raise ValueError(f"SRResNet: scale must be a power of two >= 2, got {scale!r}")
    return scale.bit_length() - 1


class SRResNet(nn.Module):
    """The SRGAN generator: 9x9 conv + PReLU, `num_blocks` residual blocks, conv + BN with a
    skip from the head, log2(scale) x2 upsampling blocks, 9x9 conv (tanh: images in [-1, 1]).

    (B, in_channels, H, W) low-resolution -> (B, out_channels, H * scale, W * scale).
    """

    layers: SRGANLayers = FASTGEN_LAYERS

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        channels: int = 64,
        num_blocks: int = 16,
        scale: int = 4,
        *,
        tanh: bool = True,
    ):
        super().__init__()
        steps = _upscale_steps(scale)
        self.scale = scale
        self.tanh = tanh
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), self.layers.PReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(channels, self.layers) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.upsample = nn.Sequential(*[UpsampleBlock(channels, 2, self.layers) for _ in range(steps)])
        self.tail = nn.Conv2d(channels, out_channels, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        head = self.head(lr)
        x = head + self.body_tail(self.blocks(head))
        x = self.tail(self.upsample(x))
        return torch.tanh(x) if self.tanh else x

    def loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """SRResNet's own training objective (before adversarial training): pixel MSE."""
        return F.mse_loss(self(lr), hr)


class SRGANDiscriminator(nn.Module):
    """The SRGAN discriminator: eight 3x3 convs (64, 64/2, 128, 128/2, 256, 256/2, 512, 512/2,
    BN after all but the first, LeakyReLU 0.2), then dense 1024 - LeakyReLU - dense 1.

    (B, in_channels, H, W) -> logits (B,). An adaptive average pool to 6x6 before the dense
    layers (96x96 crops give 6x6 maps anyway) accepts other sizes.
    """

    layers: SRGANLayers = FASTGEN_LAYERS

    def __init__(self, in_channels: int = 3, channels: int = 64, fc_size: int = 1024):
        super().__init__()
        widths = [
            channels,
            channels,
            2 * channels,
            2 * channels,
            4 * channels,
            4 * channels,
            8 * channels,
            8 * channels,
        ]
        convs = []
        prev = in_channels
        for i, width in enumerate(widths):
            convs.append(nn.Conv2d(prev, width, 3, stride=1 + i % 2, padding=1))
            if i:
                convs.append(nn.BatchNorm2d(width))
            convs.append(nn.LeakyReLU(0.2))
            prev = width
        self.features = nn.Sequential(*convs)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(prev * 36, fc_size), nn.LeakyReLU(0.2), nn.Linear(fc_size, 1)
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(image))).squeeze(1)


class SRGANGeneratorLoss(NamedTuple):
    total: torch.Tensor  # content + adversarial_weight * adversarial
    content: torch.Tensor
    adversarial: torch.Tensor


class SRGANLoss(nn.Module):
    """The SRGAN perceptual loss and the discriminator's loss.

    Generator: content + adversarial_weight (1e-3) * adversarial, where content is the MSE of
    the images, or of their features when a `feature_extractor` is given (e.g. a truncated VGG
    the user has loaded; nothing is downloaded here; it gets no gradient from the HR side), and
    adversarial = -log D(G(lr)) (binary cross-entropy of the fake logits against 1).
    Discriminator: BCE(real logits, 1) + BCE(fake logits, 0).
    """

    def __init__(self, feature_extractor: nn.Module | None = None, adversarial_weight: float = 1e-3):
        super().__init__()
        self.feature_extractor = feature_extractor
        self.adversarial_weight = adversarial_weight

    def content(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if self.feature_extractor is None:
            return F.mse_loss(sr, hr)
        with torch.no_grad():
            target = self.feature_extractor(hr)
        return F.mse_loss(self.feature_extractor(sr), target)

    def generator(self, sr: torch.Tensor, hr: torch.Tensor, fake_logits: torch.Tensor) -> SRGANGeneratorLoss:
        content = self.content(sr, hr)
        adversarial = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        return SRGANGeneratorLoss(content + self.adversarial_weight * adversarial, content, adversarial)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return real + fake

    def extra_repr(self) -> str:
        return f"adversarial_weight={self.adversarial_weight}"
