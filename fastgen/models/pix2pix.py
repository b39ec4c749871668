"""pix2pix (Isola et al., 2017): the U-Net generator with skip connections, the PatchGAN
discriminator on (input, output) pairs, and the conditional GAN + L1 objective.

Module layout and state_dict keys follow the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix), so its checkpoints load. With instance norm, each
down-path norm is fused with the LeakyReLU(0.2) that the next block applies to it (that
block's LeakyReLU slot holds an nn.Identity).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fastgen.models.cyclegan import (
    FASTGEN_LAYERS,
    GAN_MODES,
    INIT_TYPES,
    NORMS,
    ImageToImageLayers,
    NLayerDiscriminator,
    check_choice,
    gan_loss,
    init_weights,
)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down (LeakyReLU - conv4x4/2 - norm), the inner levels, up (ReLU -
    transposed conv4x4/2 - norm), and the skip: cat([x, up(...)], 1).

    `activated_input`: x already went through the LeakyReLU (fused into the outer level's
    norm), so this level's LeakyReLU slot is an nn.Identity."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "instance",
        use_dropout: bool = False,
        *,
        layers: ImageToImageLayers,
        activated_input: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        use_bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.Identity() if activated_input else nn.LeakyReLU(0.2)
        uprelu = nn.ReLU(True)  # on a fresh cat([skip, up]): in place is safe
        if norm == "instance":
            # The LeakyReLU of the next level down is fused into this norm. The skip then carries
            # the activated tensor, which the up path's ReLU turns into what the reference
            # computes: relu(leaky_relu(x)) = relu(x).
            downnorm = layers.InstanceNorm2d(inner_nc, activation="leaky_relu", negative_slope=0.2)
            upnorm = layers.InstanceNorm2d(outer_nc)
        else:
            downnorm, upnorm = nn.BatchNorm2d(inner_nc), nn.BatchNorm2d(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """pix2pix's U-Net: num_downs stride-2 levels (8 for 256x256 images: 256 -> 1 at the
    bottleneck), ngf filters in the outermost level doubling to 8 * ngf, skips between mirrored
    levels, tanh output. norm: "instance" (fused norm + LeakyReLU) or "batch" (the paper's
    BatchNorm, plain torch); use_dropout: dropout 0.5 in the inner 8 * ngf levels. Weights
    initialised as the reference's define_G does (fastgen.models.cyclegan.init_weights)."""

    layers: ImageToImageLayers = FASTGEN_LAYERS

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        *,
        init_type: str = "normal",
        init_gain: float = 0.02,
        layers: ImageToImageLayers | None = None,
    ):
        super().__init__()
        name = type(self).__name__
        check_choice(name, "norm", norm, NORMS)
        check_choice(name, "init_type", init_type, INIT_TYPES)
        if num_downs < 5:
            raise ValueError(f"{name}: num_downs must be >= 5, got {num_downs}")
        L = layers or self.layers
        fused = norm == "instance"
        kw = dict(norm=norm, layers=L, activated_input=fused)
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **kw)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **kw)
        # The first inner level takes the outermost conv's output, which no norm activated.
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm, layers=L)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm, layers=L
        )
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Pix2PixLosses(NamedTuple):
    total: torch.Tensor
    gan: torch.Tensor  # D(A, G(A)) judged real
    l1: torch.Tensor  # |G(A) - B|, times lambda_L1
    fake_B: torch.Tensor  # G(A), for the discriminator step


class Pix2Pix(nn.Module):
    """Conditional GAN: G = UnetGenerator maps A to B, D = NLayerDiscriminator (PatchGAN) judges
    the pair cat([A, B], 1). Generator loss GAN(D(A, G(A)), real) + lambda_L1 |G(A) - B|;
    discriminator loss 0.5 (GAN(D(A, B), real) + GAN(D(A, G(A)), fake)). gan_mode "vanilla"
    (BCE, the paper's) or "lsgan".

    Defaults are the reference's pix2pix training defaults (pix2pix_model.py sets --norm batch,
    and use_dropout = not --no_dropout is true): batch norm and dropout 0.5 in the U-Net, both
    networks initialised with init_weights(init_type="normal", init_gain=0.02)."""

    layers: ImageToImageLayers = FASTGEN_LAYERS

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        ndf: int = 64,
        n_layers_D: int = 3,
        norm: str = "batch",
        use_dropout: bool = True,
        gan_mode: str = "vanilla",
        lambda_L1: float = 100.0,
        init_type: str = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        check_choice(type(self).__name__, "gan_mode", gan_mode, GAN_MODES)
        check_choice(type(self).__name__, "init_type", init_type, INIT_TYPES)
        self.gan_mode, self.lambda_L1 = gan_mode, lambda_L1
        init = dict(init_type=init_type, init_gain=init_gain, layers=self.layers)
        self.netG = UnetGenerator(input_nc, output_nc, num_downs, ngf, norm, use_dropout, **init)
        self.netD = NLayerDiscriminator(input_nc + output_nc, ndf, n_layers_D, norm, **init)

    def forward(self, real_A: torch.Tensor) -> torch.Tensor:
        return self.netG(real_A)

    def generator_loss(self, real_A: torch.Tensor, real_B: torch.Tensor) -> Pix2PixLosses:
        fake_B = self.netG(real_A)
        gan = gan_loss(self.netD(torch.cat([real_A, fake_B], 1)), True, self.gan_mode)
        l1 = F.l1_loss(fake_B, real_B) * self.lambda_L1
        return Pix2PixLosses(gan + l1, gan, l1, fake_B)

    def discriminator_loss(self, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor) -> torch.Tensor:
        fake = gan_loss(self.netD(torch.cat([real_A, fake_B], 1).detach()), False, self.gan_mode)
        real = gan_loss(self.netD(torch.cat([real_A, real_B], 1)), True, self.gan_mode)
        return 0.5 * (fake + real)
