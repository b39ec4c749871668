"""fastgen.models ResnetGenerator, NLayerDiscriminator and CycleGAN against their eager twins
(fastgen.reference.models)."""

import pytest
import torch
from torch import nn

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import assert_matches_eager, assert_training_step_matches, op_namespaces, twin_pair

SMALL_G = dict(ngf=8, n_blocks=2)
SMALL = dict(ngf=8, ndf=8, n_blocks=2, n_layers_D=2)


def _images(n=2, c=3, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, side, side, generator=g) * 2 - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        SMALL_G,
        dict(ngf=8, n_blocks=1, padding_type="zero", use_dropout=True),
        dict(input_nc=1, output_nc=2, ngf=4, n_blocks=3, padding_type="replicate"),
    ],
)
def test_generator_training_step_matches_eager_twin(kwargs):
    torch.manual_seed(0)
    fast, twin = twin_pair(models.ResnetGenerator, eager.ResnetGenerator, **kwargs)
    x = _images(c=kwargs.get("input_nc", 3))
    target = _images(c=kwargs.get("output_nc", 3), seed=1)

    def loss_of(model):
        torch.manual_seed(5)  # dropout masks: same draws on both sides
        return (model(x) - target).abs().mean()

    assert_training_step_matches(fast, twin, loss_of)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_discriminator_training_step_matches_eager_twin(norm):
    fast, twin = twin_pair(models.NLayerDiscriminator, eager.NLayerDiscriminator, ndf=8, n_layers=3, norm=norm)
    x = _images(side=64)
    assert fast(x).shape == (2, 1, 6, 6)  # one logit per 70x70-receptive-field patch
    assert_training_step_matches(fast, twin, lambda m: m(x).square().mean())


@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla"])
def test_cyclegan_objective_matches_eager_twin(gan_mode):
    fast, twin = twin_pair(models.CycleGAN, eager.CycleGAN, gan_mode=gan_mode, **SMALL)
    real_A, real_B = _images(), _images(seed=1)
    assert_training_step_matches(fast, twin, lambda m: m.generator_loss(real_A, real_B).total)

    def d_loss(m):
        with torch.no_grad():
            out = m.generator_loss(real_A, real_B)
        return m.discriminator_loss(real_A, real_B, out.fake_A, out.fake_B)

    fast, twin = twin_pair(models.CycleGAN, eager.CycleGAN, gan_mode=gan_mode, **SMALL)
    for model in (fast, twin):  # the discriminators' step alone
        model.netG_A.requires_grad_(False), model.netG_B.requires_grad_(False)
    assert_training_step_matches(fast, twin, d_loss)


def test_cyclegan_objective_terms():
    model = models.CycleGAN(**SMALL)
    real_A, real_B = _images(), _images(seed=1)
    out = model.generator_loss(real_A, real_B)
    fake_B, rec_A, fake_A, rec_B = model(real_A, real_B)
    torch.testing.assert_close(out.cycle_A, 10 * (rec_A - real_A).abs().mean())
    torch.testing.assert_close(out.idt_A, 0.5 * 10 * (model.netG_A(real_B) - real_B).abs().mean())
    torch.testing.assert_close(out.gan_A, (model.netD_A(fake_B) - 1).square().mean())
    parts = out.gan_A + out.gan_B + out.cycle_A + out.cycle_B + out.idt_A + out.idt_B
    torch.testing.assert_close(out.total, parts)
    no_idt = models.CycleGAN(lambda_identity=0.0, input_nc=1, output_nc=3, **SMALL)
    assert no_idt.generator_loss(_images(c=1), real_B).idt_A == 0


def test_fastgen_models_run_fastgen_ops_and_twins_run_none():
    fast, twin = twin_pair(models.CycleGAN, eager.CycleGAN, ngf=4, ndf=4, n_blocks=1, n_layers_D=1)
    real_A, real_B = _images(), _images(seed=1)
    assert "fastgen" in op_namespaces(lambda: fast.generator_loss(real_A, real_B).total.backward())
    assert "fastgen" not in op_namespaces(lambda: twin.generator_loss(real_A, real_B).total.backward())
    assert not any(type(m).__module__.startswith("fastgen.nn") for m in twin.modules())
    assert any(isinstance(m, fastgen.nn.InstanceNorm2d) for m in fast.modules())


def test_default_generator_is_the_papers():
    g = models.ResnetGenerator()
    # 11.378M parameters, as CycleGAN's resnet_9blocks; keys as the reference implementation's.
    assert sum(p.numel() for p in g.parameters()) == 11378179
    keys = g.state_dict().keys()
    assert {
        "model.1.weight",
        "model.4.weight",
        "model.10.conv_block.5.weight",
        "model.19.weight",
        "model.26.weight",
    } <= set(keys)
    d = models.NLayerDiscriminator()
    assert sum(p.numel() for p in d.parameters()) == 2764737
    assert {"model.0.weight", "model.2.weight", "model.5.weight", "model.8.weight", "model.11.weight"} == {
        k for k in d.state_dict() if k.endswith("weight")
    }


def test_torch_nn_checkpoint_loads_into_fastgen_model():
    twin = eager.ResnetGenerator(**SMALL_G)
    fast = models.ResnetGenerator(**SMALL_G)
    fast.load_state_dict(twin.state_dict())
    x = _images()
    assert_matches_eager(fast(x), lambda: twin(x))
    # channels_last input: the fused norms keep the layout through the network
    assert_matches_eager(fast(x.to(memory_format=torch.channels_last)), lambda: twin(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding_type must be one of"):
        models.ResnetGenerator(padding_type="circular")
    with pytest.raises(ValueError, match="norm must be one of"):
        models.NLayerDiscriminator(norm="group")
    with pytest.raises(ValueError, match="gan_mode must be one of"):
        models.CycleGAN(gan_mode="wgan")
    with pytest.raises(ValueError, match="the identity loss needs input_nc == output_nc"):
        models.CycleGAN(input_nc=1, output_nc=3)
    with pytest.raises(ValueError, match="n_layers must be >= 1"):
        models.NLayerDiscriminator(n_layers=0)


def test_namespaces():
    assert fastgen.models.CycleGAN is models.CycleGAN
    assert isinstance(models.ResnetGenerator(**SMALL_G), nn.Module)
