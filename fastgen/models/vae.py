"""Variational autoencoders (Kingma & Welling): an MLP VAE, a convolutional VAE and a
conditional VAE, each sampling with fastgen's fused reparameterization + KL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fastgen import nn as fnn
from fastgen.models.gan import _check_labels


@dataclass(frozen=True)
class VAELayers:
    """The fused layers a VAE is assembled from. fastgen's models use FASTGEN_LAYERS; their
    eager twins (fastgen/reference/models/vae.py) are the same classes with plain-torch layers,
    so both share parameters and state_dict keys by construction and differ only in these."""

    Reparameterize: type  # (reduction) -> module: (mu, logvar, eps, generator) -> (z, kl)


FASTGEN_LAYERS = VAELayers(Reparameterize=fnn.Reparameterize)


class VAEOutput(NamedTuple):
    recon: torch.Tensor  # decoder output: logits for recon="bce", the mean for recon="mse"
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    kl: torch.Tensor  # KL to N(0, I), mean over the batch


class _VAE(nn.Module):
    """Shared machinery: encode -> (mu, logvar) -> fused sample + KL -> decode; the loss is the
    negative ELBO per sample, averaged over the batch: reconstruction (summed over the data
    dims) + beta * KL."""

    layers: VAELayers = FASTGEN_LAYERS

    def __init__(self, latent_dim: int, recon: str, beta: float):
        super().__init__()
        if recon not in ("bce", "mse"):
            raise ValueError(f"{type(self).__name__}: recon must be 'bce' or 'mse', got {recon!r}")
        self.latent_dim = latent_dim
        self.recon_loss = recon
        self.beta = beta
        self.reparameterize = self.layers.Reparameterize(reduction="mean")

    def _elbo_loss(self, out: VAEOutput, target: torch.Tensor, beta: float | None) -> torch.Tensor:
        beta = self.beta if beta is None else beta
        if self.recon_loss == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(out.recon, target, reduction="none")
        else:
            per_pixel = F.mse_loss(out.recon, target, reduction="none")
        recon = per_pixel.flatten(1).sum(1).mean()
        return recon + beta * out.kl

    def _decode_mean(self, recon: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(recon) if self.recon_loss == "bce" else recon

    def _prior_sample(self, n: int, generator) -> torch.Tensor:
        ref = next(self.parameters())
        return torch.randn(n, self.latent_dim, generator=generator, device=ref.device, dtype=ref.dtype)


class VAE(_VAE):
    """MLP VAE; the default is the classic MNIST shape 784-400-20."""

    def __init__(
        self, in_features: int = 784, hidden: int = 400, latent_dim: int = 20, *, recon: str = "bce", beta: float = 1.0
    ):
        super().__init__(latent_dim, recon, beta)
        self.in_features = in_features
        self.encoder = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, in_features))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.flatten(1))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None, generator=None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z, kl = self.reparameterize(mu, logvar, eps, generator)
        return VAEOutput(self.decode(z), mu, logvar, z, kl)

    def loss(self, x: torch.Tensor, eps: torch.Tensor | None = None, generator=None, beta: float | None = None):
        return self._elbo_loss(self(x, eps, generator), x.flatten(1), beta)

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator=None) -> torch.Tensor:
        if labels is not None:
            raise ValueError("VAE.sample: labels must be None for an unconditional VAE (use CVAE)")
        return self._decode_mean(self.decode(self._prior_sample(n, generator)))


class ConvVAE(_VAE):
    """Convolutional VAE: two stride-2 convs down, two transposed convs up (image side % 4 == 0)."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        latent_dim: int = 20,
        base_channels: int = 32,
        *,
        recon: str = "bce",
        beta: float = 1.0,
    ):
        super().__init__(latent_dim, recon, beta)
        if image_size % 4:
            raise ValueError(f"ConvVAE: image_size must be a multiple of 4, got {image_size}")
        c, side = base_channels, image_size // 4
        self.image_shape = (in_channels, image_size, image_size)
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(2 * c * side * side, latent_dim)
        self.fc_logvar = nn.Linear(2 * c * side * side, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 2 * c * side * side),
            nn.ReLU(),
            nn.Unflatten(1, (2 * c, side, side)),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(c, in_channels, 4, 2, 1),
        )

    def encode(self, x):
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x, eps=None, generator=None) -> VAEOutput:
        mu, logvar = self.encode(x)
        z, kl = self.reparameterize(mu, logvar, eps, generator)
        return VAEOutput(self.decode(z), mu, logvar, z, kl)

    def loss(self, x, eps=None, generator=None, beta=None):
        return self._elbo_loss(self(x, eps, generator), x, beta)

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator=None) -> torch.Tensor:
        if labels is not None:
            raise ValueError("ConvVAE.sample: labels must be None for an unconditional VAE (use CVAE)")
        return self._decode_mean(self.decode(self._prior_sample(n, generator)))


class CVAE(_VAE):
    """Conditional VAE (Sohn et al.): the one-hot label is concatenated to the encoder input and
    to z, so the decoder generates the class it is asked for."""

    def __init__(
        self,
        in_features: int = 784,
        num_classes: int = 10,
        hidden: int = 400,
        latent_dim: int = 20,
        *,
        recon: str = "bce",
        beta: float = 1.0,
    ):
        super().__init__(latent_dim, recon, beta)
        self.in_features = in_features
        self.num_classes = num_classes
        self.encoder = nn.Sequential(nn.Linear(in_features + num_classes, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim + num_classes, hidden), nn.ReLU(), nn.Linear(hidden, in_features)
        )

    def _one_hot(self, labels: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        labels = _check_labels(type(self).__name__, labels, batch, self.num_classes)
        return F.one_hot(labels, self.num_classes).to(like.dtype)

    def encode(self, x, labels):
        x = x.flatten(1)
        h = self.encoder(torch.cat([x, self._one_hot(labels, x.shape[0], x)], 1))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z, labels):
        return self.decoder(torch.cat([z, self._one_hot(labels, z.shape[0], z)], 1))

    def forward(self, x, labels, eps=None, generator=None) -> VAEOutput:
        mu, logvar = self.encode(x, labels)
        z, kl = self.reparameterize(mu, logvar, eps, generator)
        return VAEOutput(self.decode(z, labels), mu, logvar, z, kl)

    def loss(self, x, labels, eps=None, generator=None, beta=None):
        return self._elbo_loss(self(x, labels, eps, generator), x.flatten(1), beta)

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator=None) -> torch.Tensor:
        """n samples of the given labels (shape (n,)); labels=None cycles through the classes."""
        device = next(self.parameters()).device
        if labels is None:
            labels = torch.arange(n, device=device) % self.num_classes
        elif isinstance(labels, int):
            labels = torch.full((n,), labels, dtype=torch.long, device=device)
        return self._decode_mean(self.decode(self._prior_sample(n, generator), labels))
