"""Eager twins of fastgen.models: same classes and state_dict, plain-torch layers."""
from types import ModuleType as _ModuleType

# VAE, ConvVAE, CVAE
from fastgen.reference.models.vae import CVAE, VAE, ConvVAE

# RealNVP

# CycleGAN, pix2pix, SRGAN
from fastgen.reference.models.srgan import SRGANDiscriminator, SRGANLoss, SRResNet

# DCGAN, CGAN, WGAN-GP, Progressive GAN

# Siamese / ArcFace embedding networks

__all__ = [name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)]
