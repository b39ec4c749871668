"""Metric-learning models: a Siamese network (one shared encoder; a pair head with the
contrastive loss, a triplet head with the triplet margin loss, and batch-hard mining) and a
face-recognition embedding network trained with an ArcFace head. Each has an eager twin in
fastgen/reference/models/siamese.py with plain-torch losses and the same state_dict."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastgen import _checks
from fastgen import nn as fnn


@dataclass(frozen=True)
class SiameseLayers:
    """The fused layers the models are assembled from (their eager twins swap these only)."""

    ContrastiveLoss: type  # (margin) -> module: (x1, x2, y) -> loss
    TripletMarginLoss: type  # (margin, p) -> module: (anchor, positive, negative) -> loss
    BatchHardTripletLoss: type  # (margin) -> module: (embeddings, labels) -> loss
    ArcFaceLoss: type  # (embedding_size, num_classes, s, m) -> module with .weight: (embeddings, labels) -> loss


FASTGEN_LAYERS = SiameseLayers(
    ContrastiveLoss=fnn.ContrastiveLoss,
    TripletMarginLoss=fnn.TripletMarginLoss,
    BatchHardTripletLoss=fnn.BatchHardTripletLoss,
    ArcFaceLoss=fnn.ArcFaceLoss,
)


def conv_encoder(in_channels: int, image_size: int, embedding_size: int, width: int) -> nn.Sequential:
    """Two conv-BN-ReLU-pool stages (no conv bias: BatchNorm removes it) and a linear projection
    to the embedding (image side % 4 == 0)."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * side * side, embedding_size),
    )


def _check_image_size(model: str, image_size: int) -> None:
    if image_size % 4:
        raise ValueError(f"{model}: image_size must be a multiple of 4, got {image_size}")


class SiameseNet(nn.Module):
    """One encoder shared by every branch (Bromley et al., Hadsell et al.; FaceNet's triplets).

    forward(x1, x2) -> (e1, e2); pair_loss(x1, x2, y) (y = 1: same class), triplet_loss(anchor,
    positive, negative), batch_hard_loss(x, labels) (hardest positive / negative in the batch),
    distance(x1, x2) for verification."""

    layers: SiameseLayers = FASTGEN_LAYERS

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        embedding_size: int = 64,
        width: int = 32,
        *,
        margin: float = 1.0,
        triplet_margin: float = 1.0,
        batch_hard_margin: float = 0.3,
    ):
        super().__init__()
        _check_image_size(type(self).__name__, image_size)
        self.embedding_size = embedding_size
        self.encoder = conv_encoder(in_channels, image_size, embedding_size, width)
        self.contrastive = self.layers.ContrastiveLoss(margin)
        self.triplet = self.layers.TripletMarginLoss(margin=triplet_margin)
        self.batch_hard = self.layers.BatchHardTripletLoss(batch_hard_margin)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # One encoder pass over both branches (BatchNorm sees them as one batch).
        e = self.embed(torch.cat([x1, x2]))
        return e[: x1.shape[0]], e[x1.shape[0] :]

    def pair_loss(self, x1: torch.Tensor, x2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e1, e2 = self(x1, x2)
        return self.contrastive(e1, e2, y)

    def triplet_loss(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        e = self.embed(torch.cat([anchor, positive, negative]))
        a, p, n = e.split(anchor.shape[0])
        return self.triplet(a, p, n)

    def batch_hard_loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.batch_hard(self.embed(x), labels)

    @torch.no_grad()
    def distance(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        e1, e2 = self(x1, x2)
        return (e1 - e2).norm(dim=1)


class ArcFaceNet(nn.Module):
    """Face-recognition embedding network: encoder, BatchNorm'd embedding (ArcFace's neck) and an
    ArcFace margin head whose `head.weight` holds the class centers. loss(x, labels) trains it;
    forward(x) gives the embeddings, cosine(x) the cosines to every class center."""

    layers: SiameseLayers = FASTGEN_LAYERS

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        embedding_size: int = 128,
        width: int = 32,
        *,
        s: float = 64.0,
        m: float = 0.5,
    ):
        super().__init__()
        _check_image_size(type(self).__name__, image_size)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ArcFaceNet: num_classes must be a positive int, got {num_classes!r}")
        self.num_classes, self.embedding_size = num_classes, embedding_size
        self.encoder = conv_encoder(in_channels, image_size, embedding_size, width)
        self.neck = nn.BatchNorm1d(embedding_size)
        self.head = self.layers.ArcFaceLoss(embedding_size, num_classes, s=s, m=m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.encoder(x))

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        fn = type(self).__name__
        _checks.check_tensor(fn, "labels", labels)
        return self.head(self(x), labels)

    @torch.no_grad()
    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.cosine(self(x))
