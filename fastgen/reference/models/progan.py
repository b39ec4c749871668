"""Eager twins of fastgen.models' Progressive GAN (plain-torch pixel norm and fade-in)."""

from fastgen.models import progan
from fastgen.reference.models.gan import EAGER_LAYERS


class ProGANGenerator(progan.ProGANGenerator):
    layers = EAGER_LAYERS


class ProGANDiscriminator(progan.ProGANDiscriminator):
    layers = EAGER_LAYERS


class ProGAN(progan.ProGAN):
    layers = EAGER_LAYERS
