"""fastgen.models SRResNet, SRGANDiscriminator and SRGANLoss against their eager twins
(fastgen.reference.models)."""

import pytest
import torch
from torch import nn

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import assert_matches_eager, assert_training_step_matches, op_namespaces, twin_pair

SMALL = dict(channels=16, num_blocks=2)


def _pair(**kwargs):
    return twin_pair(models.SRResNet, eager.SRResNet, **kwargs)


@pytest.mark.parametrize(
    "kwargs,lr_shape",
    [
        (SMALL, (3, 3, 6, 5)),
        (dict(channels=8, num_blocks=1, scale=2, in_channels=1, out_channels=1, tanh=False), (2, 1, 7, 7)),
        (dict(channels=16, num_blocks=1, scale=8), (2, 3, 3, 4)),
    ],
)
def test_srresnet_training_step_matches_eager_twin(kwargs, lr_shape):
    fast, twin = _pair(**kwargs)
    lr = torch.rand(lr_shape) * 2 - 1
    scale = kwargs.get("scale", 4)
    hr = torch.rand(lr_shape[0], lr_shape[1], lr_shape[2] * scale, lr_shape[3] * scale) * 2 - 1
    assert_training_step_matches(fast, twin, lambda model: model.loss(lr, hr))


def test_srresnet_default_configuration_training_step():
    # The paper's generator: 64 channels, 16 residual blocks, x4.
    fast, twin = _pair()
    lr = torch.rand(2, 3, 12, 12)
    hr = torch.rand(2, 3, 48, 48)
    assert fast(lr).shape == (2, 3, 48, 48)
    assert_training_step_matches(fast, twin, lambda model: model.loss(lr, hr))


def test_srresnet_channels_last_training_step():
    fast, twin = _pair(**SMALL)
    fast = fast.to(memory_format=torch.channels_last)
    lr = (torch.rand(2, 3, 5, 6) * 2 - 1).to(memory_format=torch.channels_last)
    hr = torch.rand(2, 3, 20, 24) * 2 - 1
    assert_training_step_matches(fast, twin, lambda model: model.loss(lr, hr))


def _features():
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1))


@pytest.mark.parametrize("feature_extractor", [None, "conv"])
def test_srgan_adversarial_step_matches_eager_twin(feature_extractor):
    fast, twin = _pair(**SMALL)
    d_fast, d_twin = twin_pair(models.SRGANDiscriminator, eager.SRGANDiscriminator, channels=8, fc_size=32)
    extractor = _features() if feature_extractor else None
    loss_fast = models.SRGANLoss(extractor)
    loss_twin = eager.SRGANLoss(extractor)
    lr = torch.rand(2, 3, 6, 6) * 2 - 1
    hr = torch.rand(2, 3, 24, 24) * 2 - 1

    # Generator step: content (pixel or feature MSE) + 1e-3 adversarial, D held fixed.
    def g_loss(generator, disc, loss):
        sr = generator(lr)
        return loss.generator(sr, hr, disc(sr)).total

    assert_training_step_matches(
        fast, twin, lambda g: g_loss(g, d_fast if g is fast else d_twin, loss_fast if g is fast else loss_twin)
    )
    # Discriminator step on the generators' (equal) outputs.
    sr = fast(lr).detach()
    assert_matches_eager(sr, lambda: twin(lr).detach())
    assert_training_step_matches(
        d_fast, d_twin, lambda d: (loss_fast if d is d_fast else loss_twin).discriminator(d(hr), d(sr))
    )


def test_srgan_loss_terms():
    loss = models.SRGANLoss()
    sr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    logits = torch.tensor([0.3, -1.2])
    out = loss.generator(sr, hr, logits)
    torch.testing.assert_close(out.content, ((sr - hr) ** 2).mean())
    torch.testing.assert_close(out.adversarial, -torch.log(torch.sigmoid(logits)).mean())
    torch.testing.assert_close(out.total, out.content + 1e-3 * out.adversarial)
    real = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(
        loss.discriminator(real, logits),
        -torch.log(torch.sigmoid(real)).mean() - torch.log(1 - torch.sigmoid(logits)).mean(),
    )
    # Feature-space content loss: gradients reach the SR image, not the extractor's HR pass.
    extractor = _features()
    sr.requires_grad_()
    content = models.SRGANLoss(extractor, adversarial_weight=0.5).content(sr, hr)
    torch.testing.assert_close(content, ((extractor(sr) - extractor(hr)) ** 2).mean())
    assert torch.autograd.grad(content, sr)[0].abs().sum() > 0


def test_discriminator_shapes():
    d = models.SRGANDiscriminator()
    assert d(torch.rand(2, 3, 96, 96)).shape == (2,)
    assert d(torch.rand(1, 3, 40, 52)).shape == (1,)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 7


def test_fastgen_model_runs_fastgen_ops_and_twin_runs_none():
    fast, twin = _pair(**SMALL)
    lr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16)
    assert "fastgen" in op_namespaces(lambda: fast.loss(lr, hr).backward())
    assert "fastgen" not in op_namespaces(lambda: twin.loss(lr, hr).backward())
    assert not any(type(m).__module__.startswith("fastgen.nn") for m in twin.modules())
    assert sum(isinstance(m, fastgen.nn.PixelShufflePReLU) for m in fast.modules()) == 2
    assert sum(isinstance(m, fastgen.nn.PReLU) for m in fast.modules()) == 3


def test_torch_nn_state_dict_loads_into_fastgen_model():
    # A checkpoint of the eager model loads unchanged; eval-mode outputs agree.
    twin = eager.SRResNet(**SMALL)
    fast = models.SRResNet(**SMALL)
    fast.load_state_dict(twin.state_dict())
    fast.eval(), twin.eval()
    lr = torch.rand(2, 3, 5, 5)
    assert_matches_eager(fast(lr), lambda: twin(lr))
    keys = set(fast.state_dict())
    assert {"head.1.weight", "upsample.0.shuffle.weight", "blocks.0.act.weight", "blocks.1.bn2.running_var"} <= keys


def test_bad_arguments():
    for scale in (3, 1, 6, 2.0):
        with pytest.raises(ValueError, match="scale must be a power of two >= 2"):
            models.SRResNet(scale=scale)


def test_fastgen_models_namespace():
    assert fastgen.models.SRResNet is models.SRResNet
