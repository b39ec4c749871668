"""Eager twins of fastgen.models: same classes and state_dict, plain-torch layers."""

from types import ModuleType as _ModuleType

from fastgen.reference.models.autoencoder import AutoEncoder
from fastgen.reference.models.cyclegan import CycleGAN, NLayerDiscriminator, ResnetGenerator
from fastgen.reference.models.gan import (
    CGAN,
    DCGAN,
    WGANGP,
    CGANDiscriminator,
    CGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    WGANGPCritic,
)
from fastgen.reference.models.pix2pix import Pix2Pix, UnetGenerator
from fastgen.reference.models.progan import ProGAN, ProGANDiscriminator, ProGANGenerator
from fastgen.reference.models.realnvp import RealNVP, RealNVP2d
from fastgen.reference.models.siamese import ArcFaceNet, SiameseNet
from fastgen.reference.models.srgan import SRGANDiscriminator, SRGANLoss, SRResNet
from fastgen.reference.models.vae import CVAE, VAE, ConvVAE

__all__ = [
    name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)
]
