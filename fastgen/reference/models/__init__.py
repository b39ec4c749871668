"""Eager twins of fastgen.models: same classes and state_dict, plain-torch layers."""
from fastgen.reference.models.vae import CVAE, VAE, ConvVAE

__all__ = ["VAE", "ConvVAE", "CVAE"]
