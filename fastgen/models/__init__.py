"""Full models assembled from fastgen's layers. Each has an eager twin in
fastgen.reference.models (same classes, plain-torch layers, identical state_dict)."""
from types import ModuleType as _ModuleType

# VAE, ConvVAE, CVAE
from fastgen.models.vae import CVAE, VAE, ConvVAE, VAEOutput

# RealNVP

# CycleGAN, pix2pix, SRGAN
from fastgen.models.srgan import SRGANDiscriminator, SRGANGeneratorLoss, SRGANLoss, SRResNet

# DCGAN, CGAN, WGAN-GP, Progressive GAN

# Siamese / ArcFace embedding networks

__all__ = [name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)]
