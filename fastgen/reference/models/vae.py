"""Eager twins of fastgen.models' VAEs: the same architectures built from torch.nn and plain
torch ops only (the sampling layer is fastgen.reference.reparam_kl.Reparameterize)."""

from fastgen.models import vae
from fastgen.reference import reparam_kl

EAGER_LAYERS = vae.VAELayers(Reparameterize=reparam_kl.Reparameterize)


class VAE(vae.VAE):
    layers = EAGER_LAYERS


class ConvVAE(vae.ConvVAE):
    layers = EAGER_LAYERS


class CVAE(vae.CVAE):
    layers = EAGER_LAYERS
