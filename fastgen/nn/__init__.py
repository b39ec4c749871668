"""Drop-in modules built on fastgen.functional (torch's signatures, defaults and state_dict keys
where torch has the module), one module file per op family (fastgen/nn/<family>.py) and
Progressive GAN's plain-torch layers (progan.py)."""

from types import ModuleType as _ModuleType

from fastgen.nn.coupling import AffineCoupling
from fastgen.nn.instance_norm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from fastgen.nn.margin_softmax import ArcFaceLoss, CombinedMarginLoss, CosFaceLoss, SphereFaceLoss
from fastgen.nn.pixel_norm import PixelNorm
from fastgen.nn.pixel_shuffle import PixelShuffle, PixelShufflePReLU, PixelUnshuffle, PReLU
from fastgen.nn.progan import EqualizedConv2d, EqualizedLinear, MinibatchStdDev
from fastgen.nn.reparam_kl import Reparameterize
from fastgen.nn.triplet import BatchHardTripletLoss, ContrastiveLoss, TripletMarginLoss

__all__ = [
    name for name, value in dict(globals()).items() if not name.startswith("_") and not isinstance(value, _ModuleType)
]
