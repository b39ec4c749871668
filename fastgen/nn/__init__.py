"""Drop-in modules built on fastgen.functional (torch's signatures, defaults and state_dict keys
where torch has the module)."""
from types import ModuleType as _ModuleType

# VAE
from fastgen.nn.vae import Reparameterize

# RealNVP

# Image-to-image: instance norm

# Image-to-image: PixelShuffle
from fastgen.nn.pixel_shuffle import PixelShuffle, PixelShufflePReLU, PixelUnshuffle, PReLU

# GAN training core

# Face recognition and Siamese losses

__all__ = [name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)]
