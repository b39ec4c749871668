"""fastgen.models UnetGenerator and Pix2Pix against their eager twins (fastgen.reference.models)."""

from types import SimpleNamespace

import pytest
import torch

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import assert_matches_eager, assert_training_step_matches, op_namespaces, twin_pair

SMALL = dict(num_downs=5, ngf=4)  # 32x32 images: 32 -> 1 at the bottleneck


def _images(n=2, c=3, side=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, side, side, generator=g) * 2 - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(SMALL),
        dict(SMALL, norm="batch"),
        dict(num_downs=6, ngf=4, use_dropout=True),
        dict(input_nc=1, output_nc=2, num_downs=5, ngf=2),
    ],
)
def test_generator_training_step_matches_eager_twin(kwargs):
    fast, twin = twin_pair(models.UnetGenerator, eager.UnetGenerator, **kwargs)
    side = 2 ** kwargs["num_downs"]
    x = _images(c=kwargs.get("input_nc", 3), side=side)
    target = _images(c=kwargs.get("output_nc", 3), side=side, seed=1)

    def loss_of(model):
        torch.manual_seed(5)  # dropout masks: the same draws on both sides
        return (model(x) - target).abs().mean()

    assert_training_step_matches(fast, twin, loss_of)


def test_fused_skip_is_the_reference_unet():
    # The reference U-Net block: down = [LeakyReLU, conv, norm], skip = cat([x, up]) then ReLU.
    # fastgen fuses the LeakyReLU into the outer level's norm; the function must not change.
    torch.manual_seed(0)
    fast = models.UnetGenerator(**SMALL)
    blocks = []
    block = fast.model
    while block is not None:
        blocks.append(block)
        subs = [m for m in block.model if isinstance(m, type(block))]
        block = subs[0] if subs else None
    x = _images()

    def level(i, h):  # the reference computation, written out with torch.nn.functional
        import torch.nn.functional as F

        m = blocks[i].model
        if i == 0:
            d = m[0](h)
            return torch.tanh(m[3](F.relu(level(1, d))))
        if i == len(blocks) - 1:  # innermost: no norm on the way down
            u = m[4](m[3](F.relu(m[1](F.leaky_relu(h, 0.2)))))
            return torch.cat([h, u], 1)
        d = F.instance_norm(m[1](F.leaky_relu(h, 0.2)))
        u = F.instance_norm(m[5](F.relu(level(i + 1, d))))
        return torch.cat([h, u], 1)

    assert_matches_eager(fast(x), lambda: level(0, x))


@pytest.mark.parametrize("norm", ["batch", "instance"])  # batch + dropout: the reference's pix2pix defaults
@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_pix2pix_objective_matches_eager_twin(gan_mode, norm):
    kwargs = dict(ndf=4, n_layers_D=2, gan_mode=gan_mode, norm=norm, **SMALL)
    fast, twin = twin_pair(models.Pix2Pix, eager.Pix2Pix, **kwargs)
    real_A, real_B = _images(), _images(seed=1)
    out = fast.generator_loss(real_A, real_B)
    torch.testing.assert_close(out.l1, 100 * (out.fake_B - real_B).abs().mean())
    assert_training_step_matches(fast, twin, lambda m: m.generator_loss(real_A, real_B).total)

    fast, twin = twin_pair(models.Pix2Pix, eager.Pix2Pix, **kwargs)

    def d_loss(net_d):  # the discriminator step: only D gets gradients
        # fast.netD, twin.netD or the twin's float64 copy (which runs with the twin's generator)
        gen = fast if net_d is fast.netD else twin
        with torch.no_grad():
            fake_B = gen(real_A)
        return models.Pix2Pix.discriminator_loss(SimpleNamespace(netD=net_d, gan_mode=gan_mode), real_A, real_B, fake_B)

    assert_training_step_matches(fast.netD, twin.netD, d_loss)


def test_fastgen_model_runs_fastgen_ops_and_twin_runs_none():
    fast, twin = twin_pair(models.Pix2Pix, eager.Pix2Pix, ndf=4, n_layers_D=1, norm="instance", **SMALL)
    real_A, real_B = _images(), _images(seed=1)
    assert "fastgen" in op_namespaces(lambda: fast.generator_loss(real_A, real_B).total.backward())
    assert "fastgen" not in op_namespaces(lambda: twin.generator_loss(real_A, real_B).total.backward())
    assert not any(type(m).__module__.startswith("fastgen.nn") for m in twin.modules())


def test_default_generator_is_the_papers():
    g = models.UnetGenerator(norm="batch")
    # unet_256 with batch norm: 54.414M parameters, keys as the reference implementation's.
    assert sum(p.numel() for p in g.parameters()) == 54413955
    keys = set(g.state_dict())
    assert {
        "model.model.0.weight",
        "model.model.1.model.1.weight",
        "model.model.1.model.2.running_mean",
        "model.model.3.weight",
    } <= keys
    # With instance norm (no affine, bias in the convs) the conv parameters are the same.
    assert models.UnetGenerator()(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 256, 256)


def test_torch_nn_checkpoint_loads_into_fastgen_model():
    twin = eager.UnetGenerator(**SMALL)
    fast = models.UnetGenerator(**SMALL)
    fast.load_state_dict(twin.state_dict())
    x = _images()
    assert_matches_eager(fast(x), lambda: twin(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="norm must be one of"):
        models.UnetGenerator(norm="layer")
    with pytest.raises(ValueError, match="num_downs must be >= 5"):
        models.UnetGenerator(num_downs=3)
    with pytest.raises(ValueError, match="gan_mode must be one of"):
        models.Pix2Pix(gan_mode="hinge")
    assert fastgen.models.Pix2Pix is models.Pix2Pix
