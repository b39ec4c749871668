"""Eager twins of fastgen.models' CycleGAN: the same classes built from torch.nn and plain torch
ops only (instance norm, then the activation, then the residual add, as separate ops)."""

from fastgen.models import cyclegan
from fastgen.reference import instance_norm

EAGER_LAYERS = cyclegan.ImageToImageLayers(InstanceNorm2d=instance_norm.InstanceNorm2d)


class ResnetGenerator(cyclegan.ResnetGenerator):
    layers = EAGER_LAYERS


class NLayerDiscriminator(cyclegan.NLayerDiscriminator):
    layers = EAGER_LAYERS


class CycleGAN(cyclegan.CycleGAN):
    layers = EAGER_LAYERS
