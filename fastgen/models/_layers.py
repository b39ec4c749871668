"""The layer set a model is assembled from. fastgen's models build with FASTGEN; their eager
twins (fastgen/reference/models) are the same classes built with the plain-torch layer set,
so the two share parameters and state_dict keys by construction and differ only in the
fused layers under test."""
from __future__ import annotations

from dataclasses import dataclass

from fastgen import nn as fnn


@dataclass(frozen=True)
class Layers:
    Reparameterize: type  # (reduction) -> module: (mu, logvar, eps, generator) -> (z, kl)


FASTGEN = Layers(Reparameterize=fnn.Reparameterize)
