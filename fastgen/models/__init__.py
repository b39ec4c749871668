"""Full models assembled from fastgen's layers. Each has an eager twin in
fastgen.reference.models (same classes, plain-torch layers, identical state_dict)."""
from fastgen.models.vae import CVAE, VAE, ConvVAE, VAEOutput

__all__ = ["VAE", "ConvVAE", "CVAE", "VAEOutput"]
