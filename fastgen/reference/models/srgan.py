"""Eager twins of fastgen.models' SRGAN: the same architectures built from torch.nn only
(nn.PReLU, and nn.PixelShuffle + PReLU via fastgen.reference.pixel_shuffle.PixelShufflePReLU)."""

from fastgen.models import srgan
from fastgen.models.srgan import SRGANLoss  # noqa: F401  (plain torch: shared as is)
from fastgen.reference import pixel_shuffle

EAGER_LAYERS = srgan.SRGANLayers(PReLU=pixel_shuffle.PReLU, PixelShufflePReLU=pixel_shuffle.PixelShufflePReLU)


class SRResNet(srgan.SRResNet):
    layers = EAGER_LAYERS


class SRGANDiscriminator(srgan.SRGANDiscriminator):
    layers = EAGER_LAYERS
