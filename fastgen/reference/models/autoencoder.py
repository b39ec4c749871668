"""Eager twin of fastgen.models.AutoEncoder (which is plain torch.nn already: it has no fused layer)."""

from fastgen.models import autoencoder


class AutoEncoder(autoencoder.AutoEncoder):
    pass
