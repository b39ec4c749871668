"""Eager twins of fastgen.models' pix2pix: the same classes built from torch.nn and plain torch
ops only."""

from fastgen.models import pix2pix
from fastgen.reference.models.cyclegan import EAGER_LAYERS


class UnetGenerator(pix2pix.UnetGenerator):
    layers = EAGER_LAYERS


class Pix2Pix(pix2pix.Pix2Pix):
    layers = EAGER_LAYERS
