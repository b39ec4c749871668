"""fastgen against the code its users come from (README, "Conventions"): the reference
implementations' initialisation and defaults, their checkpoints, InsightFace's current margin
rule, and the float64 clamp of the target cosine.

The references are transcribed here where the test needs their code (junyanz's init_weights and
ResnetGenerator, pytorch/examples' DCGAN generator, arcface_torch's CombinedMarginLoss); the rest
compares with fastgen's eager twins (fastgen.reference.models), which share the state_dicts.
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as TF
from scipy import stats
from torch import nn

import fastgen
from fastgen import functional as F
from fastgen import models
from fastgen.models.cyclegan import init_weights
from fastgen.ops import margin_softmax as margin_ops
from fastgen.reference import margin_softmax as R
from fastgen.reference import models as eager
from tests._models import assert_matches_eager
from tests._tolerance import FLOOR_ULPS, assert_parity

ops = torch.ops.fastgen

# --------------------------------------------------------------------------- statistics

# Probability that one check below fails for a correct initialisation (each check is an exact
# test at this level; the draws are seeded, so a run is reproducible).
ALPHA = 1e-6


def assert_normal_sample(values: torch.Tensor, mean: float, std: float, what: str) -> None:
    """values are n i.i.d. draws of N(mean, std**2): the sample mean lies in its two-sided 1 - ALPHA
    interval (mean +- z std / sqrt(n), exact for a normal sample), the sample variance in the
    chi-square interval with n - 1 degrees of freedom, and the standardised values pass a
    Kolmogorov-Smirnov test against N(0, 1) at level ALPHA."""
    x = values.detach().double().flatten()
    n = x.numel()
    assert n >= 16, f"{what}: too few values ({n}) for a test"
    z = stats.norm.isf(ALPHA / 2)
    m = x.mean().item()
    assert abs(m - mean) <= z * std / math.sqrt(n), (
        f"{what}: mean {m:.5g}, expected {mean} +- {z * std / math.sqrt(n):.3g}"
    )
    var = x.var().item()
    lo, hi = (stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], n - 1) / (n - 1) * std**2).tolist()
    assert lo <= var <= hi, (
        f"{what}: std {math.sqrt(var):.5g}, expected {std:.5g} (std in [{math.sqrt(lo):.5g}, {math.sqrt(hi):.5g}])"
    )
    p = stats.kstest(((x - mean) / std).numpy(), "norm").pvalue
    assert p > ALPHA, f"{what}: Kolmogorov-Smirnov p = {p:.3g} against N({mean}, {std}**2)"


# --------------------------------------------------------------------------- junyanz's init_weights


def junyanz_init_weights(net, init_type="normal", init_gain=0.02):
    """networks.init_weights of junyanz/pytorch-CycleGAN-and-pix2pix, transcribed."""
    from torch.nn import init

    def init_func(m):
        classname = m.__class__.__name__
        if hasattr(m, "weight") and (classname.find("Conv") != -1 or classname.find("Linear") != -1):
            if init_type == "normal":
                init.normal_(m.weight.data, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight.data, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight.data, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                init.orthogonal_(m.weight.data, gain=init_gain)
            else:
                raise NotImplementedError("initialization method [%s] is not implemented" % init_type)
            if hasattr(m, "bias") and m.bias is not None:
                init.constant_(m.bias.data, 0.0)
        elif classname.find("BatchNorm2d") != -1:
            init.normal_(m.weight.data, 1.0, init_gain)
            init.constant_(m.bias.data, 0.0)

    net.apply(init_func)


SMALL_NETS = {
    "ResnetGenerator": dict(ngf=8, n_blocks=2),
    "NLayerDiscriminator": dict(ndf=8, n_layers=3, norm="batch"),
    "UnetGenerator": dict(num_downs=5, ngf=8, norm="batch", use_dropout=True),
}


def _net(module, name, **kwargs):
    return getattr(module, name)(**{**SMALL_NETS[name], **kwargs})


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
@pytest.mark.parametrize("name", list(SMALL_NETS))
def test_init_weights_is_the_reference_rule(name, init_type):
    # The same network, the same RNG state: fastgen's init_weights draws exactly what the
    # reference's does, for every parameter and buffer.
    net = _net(models, name)
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(7)
    init_weights(ours, init_type, 0.05)
    torch.manual_seed(7)
    junyanz_init_weights(theirs, init_type, 0.05)
    for (key, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), f"{name} {init_type}: {key} differs from the reference's init_weights"
    with pytest.raises(ValueError, match="init_type must be one of"):
        init_weights(net, "uniform")


def _layers(net):
    """(kind, qualified name, module) of every layer init_weights touches."""
    for qual, m in net.named_modules():
        if isinstance(m, nn.ConvTranspose2d):
            yield "ConvTranspose2d", qual, m
        elif isinstance(m, nn.Conv2d):
            yield "Conv2d", qual, m
        elif isinstance(m, nn.BatchNorm2d):
            yield "BatchNorm2d", qual, m


def _expected_std(weight, init_type, gain):
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    if init_type == "normal":
        return gain
    if init_type == "xavier":
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    return math.sqrt(2.0 / fan_in)  # kaiming_normal_(a=0, mode="fan_in"): gain sqrt(2), init_gain unused


@pytest.mark.parametrize("module", [models, eager], ids=["fastgen", "eager_twin"])
def test_default_init_statistics_per_layer_kind(module):
    # The defaults (init_type="normal", init_gain=0.02): conv and transposed-conv weights
    # N(0, 0.02), every bias 0, BatchNorm2d weights N(1, 0.02) and biases 0; per layer and pooled
    # per layer kind. torch's default init (first conv std 0.048 at 3x7x7 fan-in) fails this.
    torch.manual_seed(1)
    nets = {
        "ResnetGenerator": module.ResnetGenerator(ngf=32, n_blocks=3),
        "NLayerDiscriminator": module.NLayerDiscriminator(norm="batch"),
        "UnetGenerator": module.UnetGenerator(num_downs=6, ngf=16, norm="batch"),
    }
    pooled: dict[str, list[torch.Tensor]] = {}
    for net_name, net in nets.items():
        for kind, qual, m in _layers(net):
            what = f"{module.__name__}.{net_name}.{qual} ({kind})"
            center = 1.0 if kind == "BatchNorm2d" else 0.0
            if m.weight.numel() >= 64:
                assert_normal_sample(m.weight, center, 0.02, what + " weight")
            pooled.setdefault(kind, []).append(m.weight.detach().flatten() - center)
            if m.bias is not None:
                assert torch.equal(m.bias, torch.zeros_like(m.bias)), f"{what}: bias not 0"
    assert set(pooled) == {"Conv2d", "ConvTranspose2d", "BatchNorm2d"}
    for kind, parts in pooled.items():
        assert_normal_sample(torch.cat(parts), 0.0, 0.02, f"{module.__name__}: every {kind} weight")


@pytest.mark.parametrize("init_type,gain", [("normal", 0.1), ("xavier", 0.02), ("kaiming", 0.02)])
def test_init_type_and_gain_statistics(init_type, gain):
    # Each layer's weight divided by the std its rule gives (which depends on the layer's fans
    # for xavier and kaiming) is N(0, 1); pooled over the network's conv layers.
    torch.manual_seed(2)
    net = models.CycleGAN(ngf=16, ndf=16, n_blocks=2, init_type=init_type, init_gain=gain)
    parts = []
    for kind, qual, m in _layers(net):
        parts.append(m.weight.detach().flatten() / _expected_std(m.weight, init_type, gain))
        if m.bias is not None:
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), f"{qual}: bias not 0"
    assert_normal_sample(torch.cat(parts), 0.0, 1.0, f"CycleGAN init_type={init_type}, gain={gain}, standardised")


def test_orthogonal_init_is_orthogonal_times_gain():
    torch.manual_seed(3)
    gain = 0.02
    net = models.Pix2Pix(num_downs=5, ngf=8, ndf=8, init_type="orthogonal", init_gain=gain)
    for kind, qual, m in _layers(net):
        if kind == "BatchNorm2d":
            continue  # N(1, init_gain) whatever init_type (test_default_init_statistics_per_layer_kind)
        w = m.weight.detach().double().reshape(m.weight.shape[0], -1) / gain
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        # orthogonal_ takes Q of a float32 Householder QR, orthonormal to O(n eps); n eps here
        # (observed: 0.06 n eps at most on these layers).
        n = max(w.shape)
        err = (gram - torch.eye(gram.shape[0], dtype=torch.float64)).abs().max().item()
        assert err <= n * torch.finfo(torch.float32).eps, f"{qual}: W W^T / gain^2 is I to {err:.3g}"


def examples_weights_init(m):
    """pytorch/examples dcgan/main.py weights_init, transcribed (applied with net.apply)."""
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


@pytest.mark.parametrize("name", ["DCGANGenerator", "DCGANDiscriminator"])
def test_dcgan_init_is_pytorch_examples_weights_init(name):
    from fastgen.models.gan import dcgan_init_

    net = getattr(models, name)(features=8)
    ours, theirs = copy.deepcopy(net), copy.deepcopy(net)
    torch.manual_seed(8)
    dcgan_init_(ours)
    torch.manual_seed(8)
    theirs.apply(examples_weights_init)
    for (key, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert torch.equal(a, b), f"{name}: {key} differs from pytorch/examples' weights_init"
    # and the constructor applies it: the statistics of a fresh network
    torch.manual_seed(9)
    fresh = getattr(models, name)()
    for kind, qual, m in _layers(fresh):
        assert_normal_sample(m.weight, 1.0 if kind == "BatchNorm2d" else 0.0, 0.02, f"{name}.{qual}")


# --------------------------------------------------------------------------- defaults


def _count(net, cls):
    return sum(isinstance(m, cls) for m in net.modules())


def test_pix2pix_defaults_are_the_references():
    # pix2pix_model.py: parser.set_defaults(norm='batch', netG='unet_256'); define_G(...,
    # use_dropout=not opt.no_dropout) with --no_dropout off: batch norm and dropout 0.5 in the
    # (num_downs - 5) inner 8 * ngf levels of the U-Net; the PatchGAN discriminator with batch norm.
    for module in (models, eager):
        p = module.Pix2Pix(ngf=8, ndf=8)
        dropouts = [m for m in p.netG.modules() if isinstance(m, nn.Dropout)]
        assert len(dropouts) == 3 and all(d.p == 0.5 for d in dropouts)
        # unet_256: 6 down-path norms (none at the outermost and innermost levels), 7 up-path norms
        assert _count(p.netG, nn.BatchNorm2d) == 13
        assert _count(p.netD, nn.BatchNorm2d) == 3
        assert not any("InstanceNorm" in type(m).__name__ for m in p.modules())
        # use_bias = (norm is instance): no conv bias but the outermost upconv's and the last D conv's
        assert p.netD.model[2].bias is None and p.netD.model[-1].bias is not None
        assert p.netG.model.model[0].bias is None and p.netG.model.model[3].bias is not None
    assert (p.gan_mode, p.lambda_L1) == ("vanilla", 100.0)


def test_cyclegan_defaults_are_the_references():
    # cycle_gan_model.py: parser.set_defaults(no_dropout=True); --norm instance, lsgan, lambda 10, identity 0.5.
    c = models.CycleGAN(ngf=8, ndf=8, n_blocks=1)
    assert _count(c, nn.Dropout) == 0 and _count(c, nn.BatchNorm2d) == 0
    assert (c.gan_mode, c.lambda_A, c.lambda_B, c.lambda_identity) == ("lsgan", 10.0, 10.0, 0.5)


@pytest.mark.parametrize("head", ["ArcFaceLoss", "CosFaceLoss", "SphereFaceLoss", "CombinedMarginLoss"])
def test_margin_heads_initialise_like_arcface_torch(head):
    # arcface_torch PartialFC_V2: torch.normal(0, 0.01, (num_local, embedding_size)), whatever
    # the number of classes (Xavier uniform gives std 0.062 at 10 classes, 0.0045 at 100k).
    for classes in (10, 4000):
        for module in (fastgen.nn, R):
            torch.manual_seed(classes)
            h = getattr(module, head)(512, classes)
            assert h.weight.shape == (classes, 512)
            assert_normal_sample(h.weight, 0.0, 0.01, f"{module.__name__}.{head}(512, {classes}).weight")


def test_sharded_head_initialises_like_arcface_torch():
    from fastgen.distributed import ShardedMarginCrossEntropy

    if dist.is_initialized():
        pytest.skip("a process group is already initialized in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        head = ShardedMarginCrossEntropy(512, 3000)
        assert_normal_sample(head.weight, 0.0, 0.01, "ShardedMarginCrossEntropy(512, 3000).weight")
        # straight_through reaches the sharded op: one rank is the unsharded loss, to rounding
        x, w, labels = _margin_inputs()
        sharded = ShardedMarginCrossEntropy(24, 40, straight_through=True, dtype=torch.float64)
        sharded.load_full_weight(w)
        xs, xf, wf = x.clone().requires_grad_(), x.clone().requires_grad_(), w.clone().requires_grad_()
        a = sharded(xs, labels)
        b = F.margin_cross_entropy(xf, wf, labels, straight_through=True)
        a.backward()
        b.backward()
        for got, want in ((a, b), (xs.grad, xf.grad), (sharded.weight.grad, wf.grad)):
            assert_parity(got.detach(), want.detach(), want.detach(), factor=0.0, floor_ulps=64.0)
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- checkpoints


class JunyanzResnetBlock(nn.Module):
    """networks.ResnetBlock of junyanz/pytorch-CycleGAN-and-pix2pix, transcribed ('reflect' padding)."""

    def __init__(self, dim, padding_type, norm_layer, use_dropout, use_bias):
        super().__init__()
        conv_block = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            norm_layer(dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            conv_block += [nn.Dropout(0.5)]
        conv_block += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
            norm_layer(dim),
        ]
        self.conv_block = nn.Sequential(*conv_block)

    def forward(self, x):
        return x + self.conv_block(x)


class JunyanzResnetGenerator(nn.Module):
    """networks.ResnetGenerator, transcribed; define_G(netG='resnet_9blocks', norm='instance')
    builds it with norm_layer = functools.partial(nn.InstanceNorm2d, affine=False,
    track_running_stats=False)."""

    def __init__(self, input_nc, output_nc, ngf=64, use_dropout=False, n_blocks=6, padding_type="reflect"):
        super().__init__()
        norm_layer = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
        use_bias = True  # norm_layer.func == nn.InstanceNorm2d
        model = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_downsampling
        for i in range(n_blocks):
            model += [
                JunyanzResnetBlock(
                    ngf * mult,
                    padding_type=padding_type,
                    norm_layer=norm_layer,
                    use_dropout=use_dropout,
                    use_bias=use_bias,
                )
            ]
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            model += [
                nn.ConvTranspose2d(
                    ngf * mult, int(ngf * mult / 2), kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(int(ngf * mult / 2)),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3)]
        model += [nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0)]
        model += [nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, input):
        return self.model(input)


class ExamplesDCGANGenerator(nn.Module):
    """pytorch/examples dcgan/main.py Generator (ngpu = 1), transcribed."""

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, input):
        return self.main(input)


def _save_and_load(net, path):
    """BaseModel.save_networks / load_networks: torch.save(net.state_dict()), then torch.load
    and the _metadata deleted before load_state_dict (pytorch/examples keeps it: both work)."""
    torch.save(net.state_dict(), path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _images(n=2, c=3, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, side, side, generator=g) * 2 - 1


@pytest.mark.parametrize("source", ["eager_twin", "junyanz"])
def test_resnet_generator_checkpoint_loads_both_ways(tmp_path, source):
    torch.manual_seed(4)
    if source == "junyanz":
        theirs = JunyanzResnetGenerator(3, 3, ngf=8, n_blocks=3)
        junyanz_init_weights(theirs)
    else:
        theirs = eager.ResnetGenerator(ngf=8, n_blocks=3)
    ours = models.ResnetGenerator(ngf=8, n_blocks=3)
    x = _images()

    state = _save_and_load(theirs, tmp_path / "latest_net_G.pth")
    if hasattr(state, "_metadata"):
        del state._metadata  # as the reference's load_networks does
    ours.load_state_dict(state)  # strict: every key, every shape
    assert_matches_eager(ours(x), lambda: theirs(x), "reference checkpoint in fastgen")

    back = copy.deepcopy(theirs)
    torch.manual_seed(5)
    fresh = models.ResnetGenerator(ngf=8, n_blocks=3)
    back.load_state_dict(_save_and_load(fresh, tmp_path / "fastgen_net_G.pth"))
    assert_matches_eager(fresh(x), lambda: back(x), "fastgen checkpoint in the reference")


@pytest.mark.parametrize("source", ["eager_twin", "pytorch_examples"])
def test_dcgan_generator_checkpoint_loads_both_ways(tmp_path, source):
    torch.manual_seed(6)
    if source == "pytorch_examples":
        theirs = ExamplesDCGANGenerator(nz=100, ngf=8, nc=3)
    else:
        theirs = eager.DCGANGenerator(latent_dim=100, image_size=64, channels=3, features=8)
    ours = models.DCGANGenerator(latent_dim=100, image_size=64, channels=3, features=8)
    z = torch.randn(4, 100, 1, 1)
    theirs(torch.randn(8, 100, 1, 1))  # a training step's batch statistics in the running buffers

    ours.load_state_dict(_save_and_load(theirs, tmp_path / "netG.pth"))
    for mode in ("train", "eval"):  # batch statistics, then the loaded running statistics
        ours.train(mode == "train")
        theirs.train(mode == "train")
        assert_matches_eager(ours(z), lambda: theirs(z), f"netG.pth in fastgen ({mode})")

    torch.manual_seed(7)
    fresh = models.DCGANGenerator(latent_dim=100, image_size=64, channels=3, features=8)
    fresh(torch.randn(8, 100, 1, 1))
    back = copy.deepcopy(theirs)
    back.load_state_dict(_save_and_load(fresh, tmp_path / "fastgen_netG.pth"))
    fresh.eval()
    back.eval()
    assert_matches_eager(fresh(z), lambda: back(z), "fastgen checkpoint in the reference (eval)")


# --------------------------------------------------------------------------- InsightFace's current rule


def insightface_current_loss(embeddings, weight, labels, s, m1, m2, m3):
    """arcface_torch as of today, transcribed for one rank: PartialFC_V2.forward's logits (normalize,
    linear, clamp(-1, 1)), CombinedMarginLoss.forward, and DistCrossEntropy (with one rank it is
    -mean log softmax at the label, i.e. F.cross_entropy)."""
    norm_embeddings = TF.normalize(embeddings)
    norm_weight_activated = TF.normalize(weight)
    logits = TF.linear(norm_embeddings, norm_weight_activated)
    logits = logits.clamp(-1, 1)

    index_positive = torch.where(labels != -1)[0]
    target_logit = logits[index_positive, labels[index_positive].view(-1)]
    if m1 == 1.0 and m3 == 0.0:
        with torch.no_grad():
            target_logit.arccos_()
            logits.arccos_()
            final_target_logit = target_logit + m2
            logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
            logits.cos_()
        logits = logits * s
    elif m3 > 0:
        final_target_logit = target_logit - m3
        logits[index_positive, labels[index_positive].view(-1)] = final_target_logit
        logits = logits * s
    else:
        raise ValueError("arcface_torch's CombinedMarginLoss has no other case")
    return TF.cross_entropy(logits, labels)


def _margin_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(40, 24, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 40, (12,), generator=g)
    x = torch.randn(12, 24, generator=g, dtype=torch.float64)
    # rows near their class center (theta small) and rows nearly opposite (theta + m > pi: no fallback)
    x[:3] = w[labels[:3]] + 0.05 * x[:3]
    x[3:6] = -w[labels[3:6]] + 0.05 * x[3:6]
    return x, w, labels


def _loss_and_grads(fn, x, w, dtype):
    x = x.to(dtype).requires_grad_()
    w = w.to(dtype).requires_grad_()
    loss = fn(x, w)
    return (loss.detach(), *torch.autograd.grad(loss, (x, w)))


MARGINS_NOW = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4)}


@pytest.mark.parametrize("margin", list(MARGINS_NOW))
@pytest.mark.parametrize("api", ["functional", "nn", "reference"])
def test_straight_through_is_insightface_current(margin, api):
    m1, m2, m3 = MARGINS_NOW[margin]
    s = 64.0
    x, w, labels = _margin_inputs()
    cos_t = (TF.normalize(x) * TF.normalize(w)[labels]).sum(1)
    assert (torch.acos(cos_t) + 0.5 > math.pi).any() and (torch.acos(cos_t) < 0.1).any()  # both ends covered

    def ours(e, wt):
        if api == "functional":
            return F.margin_cross_entropy(e, wt, labels, s=s, m1=m1, m2=m2, m3=m3, straight_through=True)
        if api == "reference":
            return R.margin_cross_entropy(e, wt, labels, s=s, m1=m1, m2=m2, m3=m3, straight_through=True)
        head = fastgen.nn.CombinedMarginLoss(e.shape[1], wt.shape[0], s, m1, m2, m3, straight_through=True)
        return _through_head(head, e, wt, labels)

    def theirs(e, wt):
        return insightface_current_loss(e, wt, labels, s, m1, m2, m3)

    fast = _loss_and_grads(ours, x, w, torch.float32)
    eager32 = _loss_and_grads(theirs, x, w, torch.float32)
    ref = _loss_and_grads(theirs, x, w, torch.float64)
    # logits are s * cos: rounding noise scales with s (tests/_tolerance.py)
    for what, a, b, r in zip(("loss", "grad_embeddings", "grad_weight"), fast, eager32, ref):
        assert_parity(a, b, r, floor_ulps=max(FLOOR_ULPS, s), what=f"{api} {margin} {what}")


def test_straight_through_double_backward_is_insightface_current():
    # WGAN-GP-style critics differentiate the gradient: the second order of today's arcface_torch
    # graph (the margin a constant, the softmax at the margin logits) is what straight_through gives.
    x, w, labels = _margin_inputs(seed=1)
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def second_order(fn, dtype):
        e, wt = x.to(dtype).requires_grad_(), w.to(dtype).requires_grad_()
        (g,) = torch.autograd.grad(fn(e, wt), e, create_graph=True)
        return torch.autograd.grad((g * v.to(dtype)).sum(), (e, wt))

    ours = lambda e, wt: F.margin_cross_entropy(e, wt, labels, straight_through=True)  # noqa: E731
    theirs = lambda e, wt: insightface_current_loss(e, wt, labels, 64.0, 1.0, 0.5, 0.0)  # noqa: E731
    fast, eager32, ref = (
        second_order(ours, torch.float32),
        second_order(theirs, torch.float32),
        second_order(theirs, torch.float64),
    )
    for what, a, b, r in zip(("d2/dx2 v", "d2/dxdw v"), fast, eager32, ref):
        assert_parity(a, b, r, floor_ulps=64.0, what=what)


def _through_head(head, e, wt, labels):
    """The head's loss as a function of (e, wt): its weight is wt itself."""
    del head.weight
    head.weight = wt
    return head(e, labels)


def test_default_is_the_2022_rule_not_the_current_one():
    # The default keeps the exact margin gradient and the fallback: its gradients differ from
    # today's arcface_torch by far more than rounding (the option is not a no-op).
    x, w, labels = _margin_inputs()
    theirs = _loss_and_grads(
        lambda e, wt: insightface_current_loss(e, wt, labels, 64.0, 1.0, 0.5, 0.0), x, w, torch.float64
    )
    default = _loss_and_grads(lambda e, wt: F.margin_cross_entropy(e, wt, labels), x, w, torch.float64)
    current = _loss_and_grads(
        lambda e, wt: F.margin_cross_entropy(e, wt, labels, straight_through=True), x, w, torch.float64
    )
    # loss (the fallback past pi) and both gradients (the margin's own gradient): the default's
    # distance to today's code dwarfs the option's (which is rounding)
    for what, d, c, t in zip(("loss", "grad_embeddings", "grad_weight"), default, current, theirs):
        assert (d - t).abs().max() > 100 * (c - t).abs().max(), what


# --------------------------------------------------------------------------- float64 clamp


def _tiny_angle_inputs(theta):
    """Embeddings at angle theta from class 0; class 1 at cosine cos(theta) cos(0.5), about the
    ArcFace target cos(theta + 0.5), so that the loss depends on the target logit (p ~ 1/2)."""
    theta = torch.tensor(theta, dtype=torch.float64)
    x = torch.stack([torch.cos(theta), torch.sin(theta), torch.zeros_like(theta)], 1)
    w = torch.tensor([[1.0, 0.0, 0.0], [math.cos(0.5), 0.0, math.sin(0.5)]], dtype=torch.float64)
    return x, w, torch.zeros(len(theta), dtype=torch.long), theta


THETAS = [1e-5, 3e-5, 2e-4]
EPS64 = torch.finfo(torch.float64).eps


# A cosine of 3-vectors (normalized, then a dot product) is computed to within (E + 3) eps = 6 eps.
COS_ERR = 6 * EPS64


def _target_bound(theta, s, m):
    """How far a float64 target logit s cos(acos(c) + m) may be from s cos(theta + m) when c is
    cos(theta) to COS_ERR: acos moves by COS_ERR / sin(theta), the logit by s sin(theta + m) times
    that; plus a floor of FLOOR_ULPS ulps of s."""
    return s * torch.sin(theta + m).abs() * COS_ERR / torch.sin(theta) + FLOOR_ULPS * EPS64 * s


def _gradient_bound(theta, s, m, grad):
    """The same for d logit / d x = s sin(theta + m) / sqrt(1 - c^2) * d c / d x: 1 - c^2 = sin^2 theta
    computed from c carries a relative error 2 COS_ERR / sin^2 theta, its square root half of that;
    (w_n - c x_n) is computed to COS_ERR, times d logit / d c."""
    return grad.abs().max(1).values * COS_ERR / torch.sin(theta) ** 2 + 2 * _target_bound(theta, s, m)


@pytest.mark.parametrize("path", ["cpu", "triton"])
def test_float64_clamp_at_tiny_angles(path):
    # With the old clamp (1 - 1e-7) theta < 4.5e-4 rad became 4.5e-4: the ArcFace logit at
    # theta = 1e-5 came out low by 0.0134 (s = 64), and its gradient was 0.
    s, m = 64.0, 0.5
    x, w, labels, theta = _tiny_angle_inputs(THETAS)
    args = (0, 2, s, 1.0, m, 0.0, False, -100)
    if path == "triton":
        pytest.importorskip("triton")
        from fastgen.ops._triton import cuda_functions

        kernels = cuda_functions("margin_softmax")  # the ops' CUDA functions: checks + Triton launchers
        forward, backward = kernels.margin_softmax, kernels.margin_softmax_backward
    else:
        forward, backward = ops.margin_softmax, ops.margin_softmax_backward
    lse, target, cos_t = forward(x, w, labels, *args)
    bound = _target_bound(theta, s, m)
    err = (target - s * torch.cos(theta + m)).abs()
    assert (err <= bound).all(), f"target logit error {err.tolist()} > {bound.tolist()}"
    gx, _ = backward(None, torch.ones(len(THETAS), dtype=torch.float64), x, w, labels, lse, cos_t, *args, [True, False])
    # d (s cos(theta + m)) / d x at x = (cos theta, sin theta, 0), w_0 = (1, 0, 0)
    want = (
        s
        * torch.sin(theta + m)[:, None]
        * torch.stack([torch.sin(theta), -torch.cos(theta), torch.zeros_like(theta)], 1)
    )
    gbound = _gradient_bound(theta, s, m, want)
    gerr = (gx - want).abs().max(1).values
    assert (gerr <= gbound).all(), f"gradient error {gerr.tolist()} > {gbound.tolist()}"


def test_float64_clamp_in_the_reference_and_functional():
    s, m = 64.0, 0.5
    x, w, labels, theta = _tiny_angle_inputs(THETAS)
    # loss = logsumexp([T, s c1]) - T, T = s cos(theta + m), c1 = cos(theta) cos(0.5): its error
    # is at most T's plus s COS_ERR (c1's)
    target = s * torch.cos(theta + m)
    want = torch.logsumexp(torch.stack([target, s * torch.cos(theta) * math.cos(0.5)], 1), 1) - target
    bound = _target_bound(theta, s, m) + s * COS_ERR
    for fn in (F.margin_cross_entropy, R.margin_cross_entropy):
        loss = fn(x, w, labels, s=s, m2=m, reduction="none")
        assert ((loss - want).abs() <= bound).all(), f"{fn.__module__}: {(loss - want).abs().tolist()}"


def test_clamp_is_unchanged_below_float64():
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert margin_ops.clamp_eps(dtype) == 1e-7  # the kernels compute these dtypes in float32
    assert margin_ops.clamp_eps(torch.float64) == EPS64
    assert (R.clamp_eps(torch.float32), R.clamp_eps(torch.float16), R.clamp_eps(torch.bfloat16)) == (
        1e-7,
        2.0**-10,
        2.0**-7,
    )
    assert R.clamp_eps(torch.float64) == EPS64
