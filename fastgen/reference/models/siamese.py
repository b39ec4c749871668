"""Eager twins of fastgen.models' metric-learning networks: the same architectures with the
losses from torch.nn (TripletMarginLoss) and plain torch ops (fastgen/reference)."""

from torch import nn

from fastgen.models import siamese
from fastgen.reference import margin_softmax, triplet

EAGER_LAYERS = siamese.SiameseLayers(
    ContrastiveLoss=triplet.ContrastiveLoss,
    TripletMarginLoss=nn.TripletMarginLoss,
    BatchHardTripletLoss=triplet.BatchHardTripletLoss,
    ArcFaceLoss=margin_softmax.ArcFaceLoss,
)


class SiameseNet(siamese.SiameseNet):
    layers = EAGER_LAYERS


class ArcFaceNet(siamese.ArcFaceNet):
    layers = EAGER_LAYERS
