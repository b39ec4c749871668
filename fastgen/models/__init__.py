"""Full models assembled from fastgen's layers. Each has an eager twin in
fastgen.reference.models (same classes, plain-torch layers, identical state_dict)."""

from types import ModuleType as _ModuleType

from fastgen.models.autoencoder import AutoEncoder
from fastgen.models.cyclegan import CycleGAN, CycleGANLosses, NLayerDiscriminator, ResnetGenerator
from fastgen.models.gan import (
    CGAN,
    DCGAN,
    WGANGP,
    CGANDiscriminator,
    CGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    WGANGPCritic,
)
from fastgen.models.pix2pix import Pix2Pix, Pix2PixLosses, UnetGenerator
from fastgen.models.progan import ProGAN, ProGANDiscriminator, ProGANGenerator
from fastgen.models.realnvp import RealNVP, RealNVP2d
from fastgen.models.siamese import ArcFaceNet, SiameseNet
from fastgen.models.srgan import SRGANDiscriminator, SRGANGeneratorLoss, SRGANLoss, SRResNet
from fastgen.models.vae import CVAE, VAE, ConvVAE, VAEOutput

__all__ = [
    name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)
]
