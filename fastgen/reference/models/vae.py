"""Eager twins of fastgen.models' VAEs: the same architectures built from torch.nn and plain
torch ops only (the sampling layer is fastgen.reference.reparam_kl.Reparameterize)."""
from fastgen.models import vae
from fastgen.reference.models._layers import EAGER


class VAE(vae.VAE):
    layers = EAGER


class ConvVAE(vae.ConvVAE):
    layers = EAGER


class CVAE(vae.CVAE):
    layers = EAGER
