"""Eager twins of fastgen.models' RealNVP and RealNVP2d: the same architectures built from
torch.nn and plain torch ops only (the couplings are fastgen.reference.coupling.AffineCoupling)."""

from fastgen.models import realnvp
from fastgen.reference import coupling

EAGER_LAYERS = realnvp.RealNVPLayers(
    AffineCoupling=coupling.AffineCoupling,
    squeeze2d=coupling.squeeze2d,
    unsqueeze2d=coupling.unsqueeze2d,
    dequantize=coupling.dequantize,
    logit_transform=coupling.logit_transform,
)


class RealNVP(realnvp.RealNVP):
    layers = EAGER_LAYERS


class RealNVP2d(realnvp.RealNVP2d):
    layers = EAGER_LAYERS
