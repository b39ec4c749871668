"""The plain autoencoder of the lectures: encoder h = g(x), decoder x = f(h), MSE reconstruction.

It has no fused layer (nothing in it is a hot path fastgen replaces); it is here as the
baseline the VAE improves on, with an eager twin for symmetry with the other models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AutoEncoder(nn.Module):
    def __init__(self, in_features: int = 784, hidden: int = 400, code_dim: int = 20):
        super().__init__()
        self.in_features = in_features
        self.code_dim = code_dim
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, code_dim))
        self.decoder = nn.Sequential(
            nn.Linear(code_dim, hidden), nn.ReLU(), nn.Linear(hidden, in_features), nn.Sigmoid()
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error, summed over the features, averaged over the batch."""
        return F.mse_loss(self(x), x.flatten(1), reduction="none").sum(1).mean()
