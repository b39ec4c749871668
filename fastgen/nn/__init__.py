"""Drop-in modules built on fastgen.functional (torch's signatures, defaults and state_dict keys
where torch has the module)."""
from types import ModuleType as _ModuleType

# VAE
from fastgen.nn.reparam_kl import Reparameterize

# RealNVP
from fastgen.nn.coupling import AffineCoupling

# Image-to-image: instance norm
from fastgen.nn.instance_norm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d

# Image-to-image: PixelShuffle
from fastgen.nn.pixel_shuffle import PixelShuffle, PixelShufflePReLU, PixelUnshuffle, PReLU

# Progressive GAN
from fastgen.nn.pixel_norm import PixelNorm
from fastgen.nn.progan import EqualizedConv2d, EqualizedLinear, MinibatchStdDev

# Face recognition and Siamese losses
from fastgen.nn.margin_softmax import ArcFaceLoss, CombinedMarginLoss, CosFaceLoss, SphereFaceLoss
from fastgen.nn.triplet import BatchHardTripletLoss, ContrastiveLoss, TripletMarginLoss

__all__ = [name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)]
