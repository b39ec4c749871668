"""Eager twins of fastgen.models' GANs: the same architectures and training steps with the
plain-torch references of fastgen's fused layers and recipes (fastgen.reference.grad_penalty,
fastgen.reference.pixel_norm)."""

from torch import nn

from fastgen.models import gan
from fastgen.reference import grad_penalty, pixel_norm

EAGER_LAYERS = gan.GANLayers(
    PixelNorm=pixel_norm.PixelNorm,
    InstanceNorm2d=nn.InstanceNorm2d,
    LayerNorm=nn.LayerNorm,
    fade_in=grad_penalty.fade_in,
    gradient_penalty=grad_penalty.gradient_penalty,
    discriminator_loss=grad_penalty.discriminator_loss,
    generator_loss=grad_penalty.generator_loss,
)


class DCGANGenerator(gan.DCGANGenerator):
    layers = EAGER_LAYERS


class DCGANDiscriminator(gan.DCGANDiscriminator):
    layers = EAGER_LAYERS


class WGANGPCritic(gan.WGANGPCritic):
    layers = EAGER_LAYERS


class CGANGenerator(gan.CGANGenerator):
    layers = EAGER_LAYERS


class CGANDiscriminator(gan.CGANDiscriminator):
    layers = EAGER_LAYERS


class DCGAN(gan.DCGAN):
    layers = EAGER_LAYERS


class CGAN(gan.CGAN):
    layers = EAGER_LAYERS


class WGANGP(gan.WGANGP):
    layers = EAGER_LAYERS
