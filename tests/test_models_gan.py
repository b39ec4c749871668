"""fastgen.models DCGAN, CGAN, WGAN-GP and Progressive GAN against their eager twins
(fastgen.reference.models), and the GAN layers in fastgen.nn."""

import contextlib
import math

import pytest
import torch
from torch import nn

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import (
    Float64,
    assert_matches_eager,
    assert_tensors_match,
    assert_training_step_matches,
    float64_twin,
    op_namespaces,
    twin_pair,
)

SMALL = dict(g_features=8, d_features=8, latent_dim=16)


def _z(n, dim=16):
    return torch.randn(n, dim)


def _both_losses(d_loss, g_loss):
    return lambda m: d_loss(m) + g_loss(m)


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        (dict(image_size=64), (4, 3, 64, 64)),
        (dict(image_size=28, channels=1), (4, 1, 28, 28)),
        (dict(image_size=32, d_loss="lsgan", g_loss="lsgan"), (3, 3, 32, 32)),
        (dict(image_size=32, d_loss="hinge", g_loss="hinge"), (3, 3, 32, 32)),
        (dict(image_size=32, g_loss="minimax"), (3, 3, 32, 32)),
    ],
)
def test_dcgan_training_step_matches_eager_twin(kwargs, shape):
    fast, twin = twin_pair(models.DCGAN, eager.DCGAN, **SMALL, **kwargs)
    real, z = torch.randn(shape), _z(shape[0])
    assert_training_step_matches(
        fast, twin, _both_losses(lambda m: m.discriminator_loss(real, z), lambda m: m.generator_loss(z))
    )


def test_cgan_training_step_matches_eager_twin():
    fast, twin = twin_pair(models.CGAN, eager.CGAN, num_classes=5, **SMALL)
    real, z, labels = torch.randn(4, 1, 28, 28), _z(4), torch.tensor([0, 4, 2, 2])
    assert_training_step_matches(
        fast, twin, _both_losses(lambda m: m.discriminator_loss(real, labels, z), lambda m: m.generator_loss(z, labels))
    )


@pytest.mark.parametrize("norm", [None, "instance", "layer"])
def test_wgan_gp_critic_step_with_penalty_matches_eager_twin(norm):
    fast, twin = twin_pair(models.WGANGP, eager.WGANGP, image_size=32, critic_norm=norm, **SMALL)
    real, z, alpha = torch.randn(4, 3, 32, 32), _z(4), torch.rand(4)
    # The critic loss includes the gradient penalty (double backward into the critic's weights);
    # its float32 norms are summed in another order than eager's, hence 1e-4 rather than 1e-5.
    assert_training_step_matches(
        fast, twin, _both_losses(lambda m: m.critic_loss(real, z, alpha=alpha), lambda m: m.generator_loss(z))
    )


def test_wgan_gp_train_step_matches_eager_twin():
    # n_critic critic steps, then a generator step, with Adam(0, 0.9): both draw the same z and alpha.
    fast, twin = twin_pair(models.WGANGP, eager.WGANGP, image_size=28, channels=1, n_critic=2, **SMALL)
    reals = [torch.randn(4, 1, 28, 28) for _ in range(2)]
    ref = float64_twin(twin)
    results = []
    for model in (fast, twin, ref):
        opt_g, opt_c = model.optimizers()
        assert opt_c.param_groups[0]["betas"] == (0.0, 0.9) and opt_g.param_groups[0]["lr"] == 1e-4
        with Float64() if model is ref else contextlib.nullcontext():
            results.append(model.train_step(reals, opt_g, opt_c, generator=torch.Generator().manual_seed(3)))
    for key in ("critic_loss", "generator_loss"):
        assert_tensors_match(results[0][key], results[1][key], results[2][key], key)
    twin_params, ref_params = dict(twin.named_parameters()), dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        assert_tensors_match(p, twin_params[name], ref_params[name], name)
        assert p.requires_grad
    with pytest.raises(ValueError, match=r"real_batches must hold n_critic=2 batches, got 1"):
        fast.train_step(reals[:1], *fast.optimizers())


def test_wgan_gp_defaults_are_the_papers():
    model = models.WGANGP()
    assert model.n_critic == 5 and model.gp_weight == 10.0 and model.betas == (0.0, 0.9)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.critic.modules())
    assert model.critic(torch.randn(2, 3, 64, 64)).shape == (2,)
    assert model.sample(2).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_progan_training_step_matches_eager_twin(alpha):
    kwargs = dict(latent_dim=16, resolution=8, fmap_base=64, fmap_max=16, group_size=2)
    fast, twin = twin_pair(models.ProGAN, eager.ProGAN, **kwargs)
    real, z, gp_alpha = torch.randn(4, 3, 8, 8), _z(4), torch.rand(4)
    stage = 1 if alpha < 1 else None  # the last stage by default
    loss = _both_losses(
        lambda m: m.critic_loss(real, z, stage, alpha, gp_alpha=gp_alpha), lambda m: m.generator_loss(z, stage, alpha)
    )
    if alpha == 1.0:  # no fade-in: the previous stage's to_rgb / from_rgb get no gradient
        assert_matches_eager(loss(fast), lambda: loss(twin), "loss")
        return
    assert_training_step_matches(fast, twin, loss)


def test_progan_stages_and_fade_in():
    g = models.ProGANGenerator(latent_dim=8, resolution=16, fmap_base=64, fmap_max=16)
    d = models.ProGANDiscriminator(resolution=16, fmap_base=64, fmap_max=16)
    z = torch.randn(4, 8)
    for stage, side in enumerate((4, 8, 16)):
        img = g(z, stage, 0.5)
        assert img.shape == (4, 3, side, side)
        assert d(img, stage, 0.5).shape == (4,)
    assert g.features(0) == 16 and g.features(2) == 8
    # alpha = 0: exactly the upsampled previous stage; alpha = 1: the new stage alone.
    old = nn.functional.interpolate(
        g.to_rgb[0](g.initial(g.dense(g.latent_norm(z)).reshape(4, 16, 4, 4))), scale_factor=2.0
    )
    torch.testing.assert_close(g(z, 1, 0.0), old)
    torch.testing.assert_close(g(z, 1, 1.0), g(z, 1))
    with pytest.raises(ValueError, match=r"stage must be an int in \[0, 3\), got 3"):
        g(z, 3)
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\], got 1.5"):
        d(torch.randn(4, 3, 8, 8), 1, 1.5)
    with pytest.raises(ValueError, match="resolution must be a power of two >= 4, got 12"):
        models.ProGANGenerator(resolution=12)


def test_fastgen_models_run_fastgen_ops_and_twins_run_none():
    fast, twin = twin_pair(models.WGANGP, eager.WGANGP, image_size=28, channels=1, **SMALL)
    real, z = torch.randn(2, 1, 28, 28), _z(2)
    assert "fastgen" in op_namespaces(lambda: fast.critic_loss(real, z).backward())
    assert "fastgen" not in op_namespaces(lambda: twin.critic_loss(real, z).backward())
    kwargs = dict(latent_dim=16, resolution=8, fmap_base=64, fmap_max=16, group_size=2)
    fast, twin = twin_pair(models.ProGAN, eager.ProGAN, **kwargs)
    real, z = torch.randn(2, 3, 8, 8), _z(2)
    # The generator step: pixel norm and the fade-in, forward and backward.
    assert "fastgen" in op_namespaces(lambda: fast.generator_loss(z, 1, 0.5).backward())
    assert "fastgen" not in op_namespaces(
        lambda: (twin.generator_loss(z, 1, 0.5) + twin.critic_loss(real, z, 1, 0.5)).backward()
    )
    assert not any(isinstance(m, fastgen.nn.PixelNorm) for m in twin.modules())
    # DCGAN and CGAN have no fused layer (their losses are plain torch ops in both): both run aten only.
    fast, twin = twin_pair(models.DCGAN, eager.DCGAN, image_size=28, channels=1, **SMALL)
    real = torch.randn(2, 1, 28, 28)
    assert op_namespaces(lambda: twin.discriminator_loss(real, z).backward()) == {"aten"}


def test_torch_nn_state_dict_loads_into_fastgen_models():
    for fast_cls, twin_cls, kwargs, inputs in [
        (
            models.DCGANGenerator,
            eager.DCGANGenerator,
            dict(latent_dim=8, image_size=28, channels=1, features=4),
            (torch.randn(2, 8),),
        ),
        (
            models.CGANDiscriminator,
            eager.CGANDiscriminator,
            dict(num_classes=3, features=4),
            (torch.randn(2, 1, 28, 28), torch.tensor([0, 2])),
        ),
        (
            models.WGANGPCritic,
            eager.WGANGPCritic,
            dict(image_size=32, features=4, norm="instance"),
            (torch.randn(2, 3, 32, 32),),
        ),
        (
            models.ProGANGenerator,
            eager.ProGANGenerator,
            dict(latent_dim=8, resolution=8, fmap_base=32, fmap_max=8),
            (torch.randn(2, 8), 1, 0.5),
        ),
    ]:
        twin = twin_cls(**kwargs).eval()
        fast = fast_cls(**kwargs).eval()
        fast.load_state_dict(twin.state_dict())
        assert_matches_eager(fast(*inputs), lambda: twin(*inputs))


def test_architectures_follow_dcgan():
    g = models.DCGANGenerator()
    d = models.DCGANDiscriminator()
    assert g(torch.randn(2, 100)).shape == (2, 3, 64, 64)
    assert d(torch.randn(2, 3, 64, 64)).shape == (2,)
    convs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64, 3]
    assert not any(
        isinstance(m, (nn.Linear, nn.MaxPool2d, nn.AvgPool2d)) for m in list(g.modules()) + list(d.modules())
    )
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))
    mnist = models.DCGANGenerator(image_size=28, channels=1)
    assert mnist(torch.randn(2, 100)).shape == (2, 1, 28, 28)
    assert models.DCGANDiscriminator(image_size=28, channels=1)(torch.randn(2, 1, 28, 28)).shape == (2,)
    cgan = models.CGAN()
    assert cgan.sample(4).shape == (4, 1, 28, 28) and cgan.sample(2, labels=3).shape == (2, 1, 28, 28)
    # The generator sees the label: same z, different labels, different images.
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    cgan.eval()
    assert not torch.allclose(cgan.sample(1, labels=0, generator=gen()), cgan.sample(1, labels=1, generator=gen()))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"image_size must be 4 or 7 times a power of two .* got 30"):
        models.DCGANGenerator(image_size=30)
    with pytest.raises(ValueError, match=r"norm must be None, 'instance' or 'layer'"):
        models.WGANGPCritic(norm="batch")
    with pytest.raises(ValueError, match=r"norm must be 'batch', 'instance', 'layer' or None, got 'group'"):
        models.DCGANDiscriminator(norm="group")
    with pytest.raises(ValueError, match=r"n_critic must be an int >= 1"):
        models.WGANGP(n_critic=0)
    d = models.CGANDiscriminator(num_classes=3, features=4)
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values in \[0, 3\]"):
        d(x, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match=r"labels must be an integer tensor, got torch.float32"):
        d(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        d(x, torch.tensor([0, 1, 2]))


# --------------------------------------------------------------------------- GAN layers


def test_minibatch_stddev_matches_its_definition():
    layer = fastgen.nn.MinibatchStdDev(group_size=2)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (4, 4, 2, 2)
    torch.testing.assert_close(y[:, :3], x)
    # Groups are samples {0, 2} and {1, 3} (sample g * M + m is member g of group m).
    for members in ((0, 2), (1, 3)):
        s = x[list(members)].std(0, unbiased=False).mean()
        for i in members:
            torch.testing.assert_close(y[i, 3], torch.full((2, 2), s.item(), dtype=torch.float64), atol=1e-7, rtol=0)
    assert fastgen.nn.MinibatchStdDev(8)(torch.randn(3, 2, 1, 1)).shape == (3, 3, 1, 1)  # group = whole batch
    with pytest.raises(ValueError, match=r"the batch \(6\) must be a multiple of group_size \(4\)"):
        fastgen.nn.MinibatchStdDev(4)(torch.randn(6, 2, 2, 2))
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(layer, (x,))


def test_equalized_layers_scale_weights_at_run_time():
    torch.manual_seed(0)
    lin = fastgen.nn.EqualizedLinear(64, 8)
    assert abs(lin.weight.std().item() - 1) < 0.1 and not lin.bias.any()
    x = torch.randn(5, 64)
    torch.testing.assert_close(lin(x), x @ (lin.weight * math.sqrt(2) / 8).T + lin.bias)
    conv = fastgen.nn.EqualizedConv2d(4, 6, 3, padding=1, bias=False, gain=1.0)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(conv(x), nn.functional.conv2d(x, conv.weight / 6, padding=1))
    assert set(conv.state_dict()) == {"weight"} and set(lin.state_dict()) == {"weight", "bias"}
    assert "gain=1" in repr(conv)
