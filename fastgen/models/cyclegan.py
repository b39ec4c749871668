"""CycleGAN (Zhu et al., 2017): the ResNet generator, the 70x70 PatchGAN discriminator and the
CycleGAN objective, with fastgen's fused instance norm (+ReLU / +LeakyReLU, + the residual
block's skip add).

Module layout and state_dict keys follow the reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix), so its checkpoints load: where an activation is fused
into the norm, its old slot holds an nn.Identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fastgen import nn as fnn


@dataclass(frozen=True)
class ImageToImageLayers:
    """The fused layers CycleGAN and pix2pix are assembled from. fastgen's models use
    FASTGEN_LAYERS; their eager twins (fastgen/reference/models/) use plain-torch layers, so
    both share parameters and state_dict keys by construction."""

    # (num_features, affine=False, track_running_stats=False, *, activation=None,
    #  negative_slope=0.01) -> module: forward(x, residual=None) = act(instance_norm(x)) + residual
    InstanceNorm2d: type


FASTGEN_LAYERS = ImageToImageLayers(InstanceNorm2d=fnn.InstanceNorm2d)

NORMS = ("instance", "batch")
GAN_MODES = ("lsgan", "vanilla")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


@torch.no_grad()
def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """The reference's networks.init_weights (junyanz/pytorch-CycleGAN-and-pix2pix), which its
    define_G / define_D apply to every network (--init_type normal --init_gain 0.02):

      every Conv*/ConvTranspose* and Linear weight: "normal" N(0, init_gain), "xavier"
      xavier_normal_(gain=init_gain), "kaiming" kaiming_normal_(a=0, mode="fan_in") (init_gain
      unused), "orthogonal" orthogonal_(gain=init_gain); their biases 0;
      every BatchNorm2d: weight N(1, init_gain), bias 0.

    Modules are matched by class name as the reference matches them ("Conv" or "Linear" in the
    name, "BatchNorm2d" in the name), so a subclass or a fused layer named alike is covered."""
    check_choice("init_weights", "init_type", init_type, INIT_TYPES)

    def init_func(m: nn.Module) -> None:
        classname = type(m).__name__
        weight = getattr(m, "weight", None)
        if isinstance(weight, torch.Tensor) and ("Conv" in classname or "Linear" in classname):
            if init_type == "normal":
                nn.init.normal_(weight, 0.0, init_gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(weight, gain=init_gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=init_gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias, 0.0)
        elif "BatchNorm2d" in classname and isinstance(weight, torch.Tensor):
            nn.init.normal_(weight, 1.0, init_gain)
            nn.init.constant_(m.bias, 0.0)

    net.apply(init_func)
    return net


def check_choice(owner: str, name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")


def norm_act(
    layers: ImageToImageLayers, norm: str, channels: int, activation: str | None, negative_slope: float = 0.2
) -> list[nn.Module]:
    """[norm, activation slot]: instance norm with the activation fused (the slot an nn.Identity),
    or BatchNorm2d followed by the activation (as torch.nn modules)."""
    if norm == "instance":
        return [layers.InstanceNorm2d(channels, activation=activation, negative_slope=negative_slope), nn.Identity()]
    act = {None: nn.Identity(), "relu": nn.ReLU(True), "leaky_relu": nn.LeakyReLU(negative_slope, True)}[activation]
    return [nn.BatchNorm2d(channels), act]


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    return [], 1


class ResnetBlock(nn.Module):
    """pad - conv3x3 - norm+ReLU - (dropout) - pad - conv3x3 - norm, plus the skip: the second
    norm adds the block's input in its own pass."""

    def __init__(self, dim: int, padding_type: str, layers: ImageToImageLayers, use_dropout: bool):
        super().__init__()
        pad, p = _padding(padding_type)
        block = [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=True), *norm_act(layers, "instance", dim, "relu")]
        if use_dropout:
            block.append(nn.Dropout(0.5))
        pad, p = _padding(padding_type)
        block += [*pad, nn.Conv2d(dim, dim, 3, padding=p, bias=True), layers.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *body, last_norm = self.conv_block
        h = x
        for module in body:
            h = module(h)
        return last_norm(h, residual=x)  # x + norm(h), fused


class ResnetGenerator(nn.Module):
    """CycleGAN's generator: c7s1-ngf, two stride-2 downsamplings, n_blocks residual blocks, two
    transposed-conv upsamplings, c7s1-output_nc and tanh, instance norm throughout (ngf=64 and
    9 blocks for 256x256 images). Weights initialised as the reference's define_G does
    (init_weights(init_type, init_gain): N(0, 0.02) convs, zero biases by default)."""

    layers: ImageToImageLayers = FASTGEN_LAYERS

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        use_dropout: bool = False,
        padding_type: str = "reflect",
        *,
        init_type: str = "normal",
        init_gain: float = 0.02,
        layers: ImageToImageLayers | None = None,
    ):
        super().__init__()
        name = type(self).__name__
        check_choice(name, "init_type", init_type, INIT_TYPES)
        if n_blocks < 0:
            raise ValueError(f"{name}: n_blocks must be >= 0, got {n_blocks}")
        check_choice(name, "padding_type", padding_type, ("reflect", "replicate", "zero"))
        layers = layers or self.layers
        model = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=True),
            *norm_act(layers, "instance", ngf, "relu"),
        ]
        for i in range(2):  # downsampling
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                *norm_act(layers, "instance", ngf * mult * 2, "relu"),
            ]
        mult = 4
        model += [ResnetBlock(ngf * mult, padding_type, layers, use_dropout) for _ in range(n_blocks)]
        for i in range(2):  # upsampling
            mult = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                *norm_act(layers, "instance", ngf * mult // 2, "relu"),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (70x70 receptive field for n_layers=3): conv-LeakyReLU(0.2), then
    n_layers conv-norm-LeakyReLU(0.2) blocks (norm + LeakyReLU fused for instance norm), then a
    1-channel conv: one real/fake logit per patch. Initialised as the reference's define_D
    (init_weights(init_type, init_gain))."""

    layers: ImageToImageLayers = FASTGEN_LAYERS

    def __init__(
        self,
        input_nc: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "instance",
        *,
        init_type: str = "normal",
        init_gain: float = 0.02,
        layers: ImageToImageLayers | None = None,
    ):
        super().__init__()
        name = type(self).__name__
        check_choice(name, "norm", norm, NORMS)
        check_choice(name, "init_type", init_type, INIT_TYPES)
        if n_layers < 1:
            raise ValueError(f"{name}: n_layers must be >= 1, got {n_layers}")
        layers = layers or self.layers
        use_bias = norm == "instance"
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=use_bias),
                *norm_act(layers, norm, ndf * mult, "leaky_relu", 0.2),
            ]
        seq += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def gan_loss(prediction: torch.Tensor, target_is_real: bool, gan_mode: str) -> torch.Tensor:
    """LSGAN (mean squared error to 1 or 0) or vanilla GAN (BCE with logits) on every patch."""
    target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
    if gan_mode == "lsgan":
        return F.mse_loss(prediction, target)
    return F.binary_cross_entropy_with_logits(prediction, target)


class CycleGANLosses(NamedTuple):
    total: torch.Tensor
    gan_A: torch.Tensor  # D_A(G_A(A)) judged real
    gan_B: torch.Tensor
    cycle_A: torch.Tensor  # |G_B(G_A(A)) - A|, times lambda_A
    cycle_B: torch.Tensor
    idt_A: torch.Tensor  # |G_A(B) - B|, times lambda_B * lambda_identity
    idt_B: torch.Tensor
    fake_A: torch.Tensor  # G_B(B), for the discriminator step (and an image pool)
    fake_B: torch.Tensor  # G_A(A)


class CycleGAN(nn.Module):
    """G_A: A -> B, G_B: B -> A (ResnetGenerator), D_A judges domain B, D_B domain A
    (NLayerDiscriminator), with CycleGAN's objective:

      generator: GAN(D_A(G_A(A))) + GAN(D_B(G_B(B))) + lambda_A |G_B(G_A(A)) - A| + lambda_B |G_A(G_B(B)) - B|
                 + lambda_identity * (lambda_B |G_A(B) - B| + lambda_A |G_B(A) - A|)
      discriminators: 0.5 (GAN(D(real), real) + GAN(D(fake), fake)) for each.

    gan_mode "lsgan" (the paper's) or "vanilla" (BCE); L1 losses are means over pixels. Every
    network initialised with init_weights(init_type, init_gain), as the reference's
    (--init_type normal --init_gain 0.02).
    """

    layers: ImageToImageLayers = FASTGEN_LAYERS

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        ndf: int = 64,
        n_blocks: int = 9,
        n_layers_D: int = 3,
        gan_mode: str = "lsgan",
        lambda_A: float = 10.0,
        lambda_B: float = 10.0,
        lambda_identity: float = 0.5,
        use_dropout: bool = False,
        init_type: str = "normal",
        init_gain: float = 0.02,
    ):
        super().__init__()
        check_choice(type(self).__name__, "gan_mode", gan_mode, GAN_MODES)
        check_choice(type(self).__name__, "init_type", init_type, INIT_TYPES)
        if lambda_identity > 0 and input_nc != output_nc:
            raise ValueError(
                f"{type(self).__name__}: the identity loss needs input_nc == output_nc, got "
                f"{input_nc} and {output_nc} (set lambda_identity=0)"
            )
        self.gan_mode = gan_mode
        self.lambda_A, self.lambda_B, self.lambda_identity = lambda_A, lambda_B, lambda_identity
        L = self.layers
        init = dict(init_type=init_type, init_gain=init_gain, layers=L)
        self.netG_A = ResnetGenerator(input_nc, output_nc, ngf, n_blocks, use_dropout, **init)
        self.netG_B = ResnetGenerator(output_nc, input_nc, ngf, n_blocks, use_dropout, **init)
        self.netD_A = NLayerDiscriminator(output_nc, ndf, n_layers_D, **init)
        self.netD_B = NLayerDiscriminator(input_nc, ndf, n_layers_D, **init)

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor):
        """(fake_B, rec_A, fake_A, rec_B)."""
        fake_B = self.netG_A(real_A)
        fake_A = self.netG_B(real_B)
        return fake_B, self.netG_B(fake_B), fake_A, self.netG_A(fake_A)

    def generator_loss(self, real_A: torch.Tensor, real_B: torch.Tensor) -> CycleGANLosses:
        fake_B, rec_A, fake_A, rec_B = self(real_A, real_B)
        zero = real_A.new_zeros(())
        idt_A = idt_B = zero
        if self.lambda_identity > 0:
            idt_A = F.l1_loss(self.netG_A(real_B), real_B) * self.lambda_B * self.lambda_identity
            idt_B = F.l1_loss(self.netG_B(real_A), real_A) * self.lambda_A * self.lambda_identity
        gan_A = gan_loss(self.netD_A(fake_B), True, self.gan_mode)
        gan_B = gan_loss(self.netD_B(fake_A), True, self.gan_mode)
        cycle_A = F.l1_loss(rec_A, real_A) * self.lambda_A
        cycle_B = F.l1_loss(rec_B, real_B) * self.lambda_B
        total = gan_A + gan_B + cycle_A + cycle_B + idt_A + idt_B
        return CycleGANLosses(total, gan_A, gan_B, cycle_A, cycle_B, idt_A, idt_B, fake_A, fake_B)

    def discriminator_loss(
        self, real_A: torch.Tensor, real_B: torch.Tensor, fake_A: torch.Tensor, fake_B: torch.Tensor
    ) -> torch.Tensor:
        """D_A on (real_B, fake_B) plus D_B on (real_A, fake_A); the fakes are detached (pass
        images from a history pool to follow the paper)."""

        def one(net, real, fake):
            return 0.5 * (gan_loss(net(real), True, self.gan_mode) + gan_loss(net(fake.detach()), False, self.gan_mode))

        return one(self.netD_A, real_B, fake_B) + one(self.netD_B, real_A, fake_A)
