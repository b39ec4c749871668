"""GANs: DCGAN (Radford et al.), the conditional GAN (Mirza & Osindero) in DCGAN form, and
WGAN-GP (Gulrajani et al.) with a DCGAN-style critic and the n_critic = 5 two-timescale recipe.

fastgen's part is the training step: the fused WGAN-GP interpolation + gradient penalty (one
pass each way, NaN-free, differentiable twice) and the GAN losses; the convolutions and batch
norms are torch's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from fastgen import _checks
from fastgen import functional as F
from fastgen import grad_penalty as recipes
from fastgen import nn as fnn


@dataclass(frozen=True)
class GANLayers:
    """The fused layers and functions the GAN models are assembled from. fastgen's models use
    FASTGEN_LAYERS; their eager twins (fastgen/reference/models/gan.py, progan.py) are the same
    classes with plain-torch ones, so both share parameters and state_dict keys by construction."""

    PixelNorm: type  # (eps) -> module
    # Optional critic norms, (num_features, affine=True) and (normalized_shape). The critic's
    # instance norm is fastgen's fused one (twice differentiable, as the penalty needs).
    InstanceNorm2d: type
    LayerNorm: type
    fade_in: Callable  # (new, old, alpha) -> alpha * new + (1 - alpha) * old
    gradient_penalty: Callable  # (critic, real, fake, *, weight, target, alpha, generator) -> penalty
    discriminator_loss: Callable  # (real_logits, fake_logits, kind) -> loss
    generator_loss: Callable  # (fake_logits, kind) -> loss


FASTGEN_LAYERS = GANLayers(
    PixelNorm=fnn.PixelNorm,
    InstanceNorm2d=fnn.InstanceNorm2d,
    LayerNorm=nn.LayerNorm,
    fade_in=F.fade_in,
    gradient_penalty=recipes.gradient_penalty,
    discriminator_loss=F.discriminator_loss,
    generator_loss=F.generator_loss,
)


class _GANModule(nn.Module):
    layers: GANLayers = FASTGEN_LAYERS

    def __init__(self, layers: GANLayers | None):
        super().__init__()
        if layers is not None:  # a wrapper passes its own layer set to the networks it builds
            self.layers = layers


def _geometry(fn: str, image_size: int) -> tuple[int, int]:
    """image_size = base * 2**doublings with base 4 (64x64, 32x32, ...) or 7 (28x28, 56x56)."""
    for base in (4, 7):
        doublings, size = 0, base
        while size < image_size:
            size, doublings = size * 2, doublings + 1
        if size == image_size and doublings >= 1:
            return base, doublings
    _checks.fail(fn, f"image_size must be 4 or 7 times a power of two (64, 32, 28, ...), got {image_size}")


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN's initialization: conv weights N(0, 0.02); norm scales N(1, 0.02), shifts 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 1.0)
        elif getattr(m, "weight", None) is not None and m.weight.dim() >= 1 and "Norm" in type(m).__name__:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(_GANModule):
    """z (B, latent_dim) -> image (B, channels, image_size, image_size) in [-1, 1]: a transposed
    conv to base x base (4, or 7 for 28x28), then stride-2 transposed convs doubling the side,
    each followed by BatchNorm and ReLU, and a final tanh. Widths halve as the side doubles,
    ending at `features` (64x64: 8f, 4f, 2f, f)."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 3,
        features: int = 64,
        *,
        layers: GANLayers | None = None,
    ):
        super().__init__(layers)
        base, doublings = _geometry(type(self).__name__, image_size)
        self.latent_dim, self.image_size, self.channels = latent_dim, image_size, channels
        width = features * 2 ** (doublings - 1)
        blocks = [nn.ConvTranspose2d(latent_dim, width, base, 1, 0, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(doublings - 1):
            blocks += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
            width //= 2
        blocks += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*blocks)
        dcgan_init_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


def _critic_norm(layers: GANLayers, norm: str | None, width: int, side: int, fn: str) -> list[nn.Module]:
    if norm is None:
        return []
    if norm == "batch":
        return [nn.BatchNorm2d(width)]
    if norm == "instance":
        return [layers.InstanceNorm2d(width, affine=True)]
    if norm == "layer":
        return [layers.LayerNorm([width, side, side])]
    _checks.fail(fn, f"norm must be 'batch', 'instance', 'layer' or None, got {norm!r}")


class DCGANDiscriminator(_GANModule):
    """image -> logit (B,): stride-2 4x4 convs halving the side (no pooling, no hidden fully
    connected layer), LeakyReLU(0.2) after each, a norm after all but the first, and a final
    base x base conv to one logit. norm: "batch" (DCGAN), or for a critic None, "instance"
    or "layer"."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        features: int = 64,
        norm: str | None = "batch",
        *,
        layers: GANLayers | None = None,
    ):
        super().__init__(layers)
        fn = type(self).__name__
        base, doublings = _geometry(fn, image_size)
        self.image_size, self.channels, self.norm = image_size, channels, norm
        side = image_size // 2
        blocks = [nn.Conv2d(channels, features, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        width = features
        for _ in range(doublings - 1):
            side //= 2
            blocks += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm is None)]
            blocks += _critic_norm(self.layers, norm, width * 2, side, fn)
            blocks += [nn.LeakyReLU(0.2, True)]
            width *= 2
        blocks += [nn.Conv2d(width, 1, base, 1, 0, bias=False)]
        self.main = nn.Sequential(*blocks)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).reshape(-1)


class WGANGPCritic(DCGANDiscriminator):
    """The DCGAN discriminator as a WGAN-GP critic: no batch norm (the gradient penalty is per
    sample), optionally instance or layer norm (norm=None, "instance" or "layer")."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        features: int = 64,
        norm: str | None = None,
        *,
        layers: GANLayers | None = None,
    ):
        if norm == "batch":
            _checks.fail(
                type(self).__name__,
                "norm must be None, 'instance' or 'layer' (batch norm couples the "
                "samples the penalty treats one by one), got 'batch'",
            )
        super().__init__(image_size, channels, features, norm, layers=layers)


def _check_labels(fn: str, labels, batch: int, num_classes: int) -> torch.Tensor:
    _checks.check_tensor(fn, "labels", labels)
    if labels.dtype == torch.bool or labels.dtype.is_floating_point or labels.dtype.is_complex:
        _checks.fail(fn, f"labels must be an integer tensor, got {labels.dtype}", TypeError)
    if labels.shape != (batch,):
        _checks.fail(fn, f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        _checks.fail(
            fn, f"labels must be in [0, {num_classes}), got values in [{labels.min().item()}, {labels.max().item()}]"
        )
    return labels.long()


class CGANGenerator(_GANModule):
    """Conditional DCGAN generator: a learned label embedding concatenated to z."""

    def __init__(
        self,
        num_classes: int = 10,
        latent_dim: int = 100,
        image_size: int = 28,
        channels: int = 1,
        features: int = 64,
        embed_dim: int | None = None,
        *,
        layers: GANLayers | None = None,
    ):
        super().__init__(layers)
        self.num_classes, self.latent_dim = num_classes, latent_dim
        embed_dim = num_classes if embed_dim is None else embed_dim
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = DCGANGenerator(latent_dim + embed_dim, image_size, channels, features, layers=self.layers)
        nn.init.normal_(self.embed.weight)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = _check_labels(type(self).__name__, labels, z.shape[0], self.num_classes)
        return self.net(torch.cat([z.reshape(z.shape[0], -1), self.embed(labels).to(z.dtype)], 1))


class CGANDiscriminator(_GANModule):
    """Conditional DCGAN discriminator: the label's learned embedding, one image-sized map,
    is stacked onto the image as an extra channel."""

    def __init__(
        self,
        num_classes: int = 10,
        image_size: int = 28,
        channels: int = 1,
        features: int = 64,
        norm: str | None = "batch",
        *,
        layers: GANLayers | None = None,
    ):
        super().__init__(layers)
        self.num_classes, self.image_size = num_classes, image_size
        self.embed = nn.Embedding(num_classes, image_size * image_size)
        self.net = DCGANDiscriminator(image_size, channels + 1, features, norm, layers=self.layers)
        nn.init.normal_(self.embed.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = _check_labels(type(self).__name__, labels, x.shape[0], self.num_classes)
        label_map = self.embed(labels).to(x.dtype).reshape(x.shape[0], 1, self.image_size, self.image_size)
        return self.net(torch.cat([x, label_map], 1))


# -----------------------------------------------------------------------------------------
# training steps


class DCGAN(_GANModule):
    """A DCGAN generator and discriminator with their losses (default: discriminator BCE and the
    non-saturating generator loss, on logits). Train with Adam(lr=2e-4, betas=(0.5, 0.999))."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 3,
        g_features: int = 64,
        d_features: int = 64,
        *,
        d_loss: str = "bce",
        g_loss: str = "nonsaturating",
    ):
        super().__init__(None)
        self.latent_dim, self.d_loss_kind, self.g_loss_kind = latent_dim, d_loss, g_loss
        self.generator = DCGANGenerator(latent_dim, image_size, channels, g_features, layers=self.layers)
        self.discriminator = DCGANDiscriminator(image_size, channels, d_features, "batch", layers=self.layers)

    def discriminator_loss(self, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        fake = self.generator(z).detach()
        return self.layers.discriminator_loss(self.discriminator(real), self.discriminator(fake), self.d_loss_kind)

    def generator_loss(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers.generator_loss(self.discriminator(self.generator(z)), self.g_loss_kind)

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        ref = next(self.parameters())
        return torch.randn(n, self.latent_dim, generator=generator, device=ref.device, dtype=ref.dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generator(self.latent(n, generator))


class CGAN(DCGAN):
    """Conditional GAN: CGANGenerator and CGANDiscriminator with the DCGAN losses."""

    def __init__(
        self,
        num_classes: int = 10,
        latent_dim: int = 100,
        image_size: int = 28,
        channels: int = 1,
        g_features: int = 64,
        d_features: int = 64,
        *,
        d_loss: str = "bce",
        g_loss: str = "nonsaturating",
    ):
        _GANModule.__init__(self, None)
        self.num_classes, self.latent_dim, self.d_loss_kind, self.g_loss_kind = num_classes, latent_dim, d_loss, g_loss
        self.generator = CGANGenerator(num_classes, latent_dim, image_size, channels, g_features, layers=self.layers)
        self.discriminator = CGANDiscriminator(
            num_classes, image_size, channels, d_features, "batch", layers=self.layers
        )

    def discriminator_loss(self, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        fake = self.generator(z, labels).detach()
        return self.layers.discriminator_loss(
            self.discriminator(real, labels), self.discriminator(fake, labels), self.d_loss_kind
        )

    def generator_loss(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.layers.generator_loss(self.discriminator(self.generator(z, labels), labels), self.g_loss_kind)

    @torch.no_grad()
    def sample(self, n: int, labels=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples of the given labels ((n,) tensor or one int); None cycles through the classes."""
        device = next(self.parameters()).device
        if labels is None:
            labels = torch.arange(n, device=device) % self.num_classes
        elif isinstance(labels, int):
            labels = torch.full((n,), labels, dtype=torch.long, device=device)
        return self.generator(self.latent(n, generator), labels)


class WGANGP(DCGAN):
    """WGAN-GP (Gulrajani et al., 2017): a DCGAN generator and a WGANGPCritic, the Wasserstein
    losses plus the gradient penalty (weight 10, target norm 1), and the paper's schedule:
    n_critic = 5 critic steps per generator step, Adam(lr=1e-4, betas=(0, 0.9)) for both. The
    learning rates are separate (two-timescale: pass lr_critic > lr_generator for TTUR)."""

    def __init__(
        self,
        latent_dim: int = 100,
        image_size: int = 64,
        channels: int = 3,
        g_features: int = 64,
        d_features: int = 64,
        *,
        critic_norm: str | None = None,
        gp_weight: float = 10.0,
        n_critic: int = 5,
        lr_generator: float = 1e-4,
        lr_critic: float = 1e-4,
        betas: tuple = (0.0, 0.9),
    ):
        _GANModule.__init__(self, None)
        if isinstance(n_critic, bool) or not isinstance(n_critic, int) or n_critic < 1:
            _checks.fail(type(self).__name__, f"n_critic must be an int >= 1, got {n_critic!r}")
        self.latent_dim, self.gp_weight, self.n_critic = latent_dim, gp_weight, n_critic
        self.lr_generator, self.lr_critic, self.betas = lr_generator, lr_critic, tuple(betas)
        self.generator = DCGANGenerator(latent_dim, image_size, channels, g_features, layers=self.layers)
        self.critic = WGANGPCritic(image_size, channels, d_features, critic_norm, layers=self.layers)

    def critic_loss(
        self, real: torch.Tensor, z: torch.Tensor, alpha=None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """E[D(fake)] - E[D(real)] + gp_weight * E[(||grad D(x_hat)|| - 1)^2]."""
        fake = self.generator(z).detach()
        wasserstein = self.layers.discriminator_loss(self.critic(real), self.critic(fake), "wasserstein")
        penalty = self.layers.gradient_penalty(
            self.critic, real, fake, weight=self.gp_weight, alpha=alpha, generator=generator
        )
        return wasserstein + penalty

    def generator_loss(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers.generator_loss(self.critic(self.generator(z)), "wasserstein")

    def optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        """(generator optimizer, critic optimizer): Adam with the two learning rates."""
        return (
            torch.optim.Adam(self.generator.parameters(), lr=self.lr_generator, betas=self.betas),
            torch.optim.Adam(self.critic.parameters(), lr=self.lr_critic, betas=self.betas),
        )

    def train_step(
        self,
        real_batches: Sequence[torch.Tensor],
        opt_generator: torch.optim.Optimizer,
        opt_critic: torch.optim.Optimizer,
        generator: torch.Generator | None = None,
    ) -> dict:
        """One generator iteration of WGAN-GP: n_critic critic steps (one per batch of
        real_batches, which must hold n_critic batches), then one generator step. Returns the
        last critic loss and the generator loss (detached)."""
        if len(real_batches) != self.n_critic:
            _checks.fail(
                "WGANGP.train_step", f"real_batches must hold n_critic={self.n_critic} batches, got {len(real_batches)}"
            )
        for real in real_batches:
            opt_critic.zero_grad(set_to_none=True)
            critic_loss = self.critic_loss(real, self.latent(real.shape[0], generator), generator=generator)
            critic_loss.backward()
            opt_critic.step()
        opt_generator.zero_grad(set_to_none=True)
        critic_params = [p for p in self.critic.parameters() if p.requires_grad]
        for p in critic_params:  # the generator step needs no critic weight gradients
            p.requires_grad_(False)
        try:
            generator_loss = self.generator_loss(self.latent(real_batches[-1].shape[0], generator))
            generator_loss.backward()
        finally:
            for p in critic_params:
                p.requires_grad_(True)
        opt_generator.step()
        return {"critic_loss": critic_loss.detach(), "generator_loss": generator_loss.detach()}
