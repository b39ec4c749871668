"""Eager references for the Siamese losses, as they are usually written: the contrastive loss
on F.pairwise_distance, torch's own triplet margin loss, and the batch-hard triplet loss on a
Gram-matrix distance matrix with masked max / min (Moindrot's widely copied version)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgen._checks import reduce

triplet_margin_loss = F.triplet_margin_loss
TripletMarginLoss = nn.TripletMarginLoss


def contrastive_loss(x1, x2, y, margin=1.0, *, eps=1e-6, reduction="mean"):
    d = F.pairwise_distance(x1, x2, eps=eps)
    y = y.to(d.dtype)
    return reduce(y * d.pow(2) + (1 - y) * F.relu(margin - d).pow(2), reduction)


def pairwise_distances(embeddings, squared=False):
    dot = embeddings @ embeddings.T
    square_norm = torch.diagonal(dot)
    distances = F.relu(square_norm[None, :] - 2.0 * dot + square_norm[:, None])
    if not squared:
        # sqrt has an infinite gradient at 0: move the zeros away and back.
        zero = (distances == 0).to(distances.dtype)
        distances = torch.sqrt(distances + zero * 1e-16) * (1.0 - zero)
    return distances


def batch_hard_triplet_loss(embeddings, labels, margin=0.3, squared=False, *, reduction="mean"):
    d = pairwise_distances(embeddings, squared)
    same = labels[None, :] == labels[:, None]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive = same & ~eye
    negative = ~same
    valid = positive.any(1) & negative.any(1)
    if len(labels) == 0:  # max over an empty row is an error
        per_anchor = embeddings.sum(1)
    else:
        hardest_positive = d.masked_fill(~positive, float("-inf")).max(1).values
        hardest_negative = d.masked_fill(~negative, float("inf")).min(1).values
        per_anchor = torch.where(valid, F.relu(hardest_positive - hardest_negative + margin), 0.0)
    if reduction == "mean":
        return per_anchor.sum() / valid.sum().clamp_min(1)
    return reduce(per_anchor, reduction)


class ContrastiveLoss(nn.Module):
    def __init__(self, margin=1.0, eps=1e-6, reduction="mean"):
        super().__init__()
        self.margin, self.eps, self.reduction = margin, eps, reduction

    def forward(self, x1, x2, y):
        return contrastive_loss(x1, x2, y, self.margin, eps=self.eps, reduction=self.reduction)


class BatchHardTripletLoss(nn.Module):
    def __init__(self, margin=0.3, squared=False, reduction="mean"):
        super().__init__()
        self.margin, self.squared, self.reduction = margin, squared, reduction

    def forward(self, embeddings, labels):
        return batch_hard_triplet_loss(embeddings, labels, self.margin, self.squared, reduction=self.reduction)
