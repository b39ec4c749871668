"""fastgen.models VAE, ConvVAE, CVAE against their eager twins (fastgen.reference.models)."""

import pytest
import torch

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import assert_matches_eager, assert_training_step_matches, op_namespaces, twin_pair

CASES = [
    ("VAE", dict(), lambda: torch.rand(8, 1, 28, 28), False),
    ("VAE", dict(in_features=64, hidden=32, latent_dim=5, recon="mse", beta=0.5), lambda: torch.rand(6, 64), False),
    ("ConvVAE", dict(image_size=28), lambda: torch.rand(4, 1, 28, 28), False),
    (
        "ConvVAE",
        dict(in_channels=3, image_size=8, base_channels=8, latent_dim=4),
        lambda: torch.rand(5, 3, 8, 8),
        False,
    ),
    ("CVAE", dict(), lambda: torch.rand(8, 784), True),
    ("CVAE", dict(in_features=64, num_classes=3, hidden=16, latent_dim=2), lambda: torch.rand(7, 64), True),
]


def _loss_fn(x, labels, eps):
    if labels is None:
        return lambda model: model.loss(x, eps=eps)
    return lambda model: model.loss(x, labels, eps=eps)


@pytest.mark.parametrize("name,kwargs,make_x,conditional", CASES)
def test_training_step_matches_eager_twin(name, kwargs, make_x, conditional):
    fast, twin = twin_pair(getattr(models, name), getattr(eager, name), **kwargs)
    x = make_x()
    labels = torch.randint(0, fast.num_classes, (x.shape[0],)) if conditional else None
    eps = torch.randn(x.shape[0], fast.latent_dim)
    assert_training_step_matches(fast, twin, _loss_fn(x, labels, eps))


@pytest.mark.parametrize("name,kwargs,make_x,conditional", CASES[:1] + CASES[2:3] + CASES[4:5])
def test_fastgen_model_runs_fastgen_ops_and_twin_runs_none(name, kwargs, make_x, conditional):
    fast, twin = twin_pair(getattr(models, name), getattr(eager, name), **kwargs)
    x = make_x()
    labels = torch.randint(0, 10, (x.shape[0],)) if conditional else None
    loss_of = _loss_fn(x, labels, None)
    assert "fastgen" in op_namespaces(lambda: loss_of(fast).backward())
    assert "fastgen" not in op_namespaces(lambda: loss_of(twin).backward())
    assert not any(type(m).__module__.startswith("fastgen.nn") for m in twin.modules())


def test_in_kernel_noise_is_seeded():
    model = models.VAE(in_features=16, hidden=8, latent_dim=3)
    x = torch.rand(4, 16)
    torch.manual_seed(3)
    a = model.loss(x)
    torch.manual_seed(3)
    b = model.loss(x)
    assert torch.equal(a, b)
    assert not torch.equal(a, model.loss(x))


def test_sample_shapes_and_ranges():
    vae = models.VAE(in_features=16, hidden=8, latent_dim=3)
    s = vae.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 16) and (s >= 0).all() and (s <= 1).all()
    conv = models.ConvVAE(in_channels=1, image_size=8, base_channels=4, latent_dim=2)
    assert conv.sample(3).shape == (3, 1, 8, 8)
    cvae = models.CVAE(in_features=16, num_classes=4, hidden=8, latent_dim=3)
    assert cvae.sample(6).shape == (6, 16)
    assert cvae.sample(2, labels=torch.tensor([1, 3])).shape == (2, 16)
    assert cvae.sample(3, labels=2).shape == (3, 16)
    # The decoder really sees the label: different labels, same z, different images.
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert not torch.allclose(cvae.sample(1, labels=0, generator=g()), cvae.sample(1, labels=1, generator=g()))


def test_bad_arguments():
    with pytest.raises(ValueError, match="recon must be 'bce' or 'mse'"):
        models.VAE(recon="l1")
    with pytest.raises(ValueError, match="image_size must be a multiple of 4"):
        models.ConvVAE(image_size=30)
    with pytest.raises(ValueError, match="labels must be None"):
        models.VAE(in_features=4, hidden=4, latent_dim=2).sample(2, labels=torch.tensor([0, 1]))
    cvae = models.CVAE(in_features=4, num_classes=3, hidden=4, latent_dim=2)
    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got values in \[0, 3\]"):
        cvae.loss(x, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="labels must be an integer tensor, got torch.float32"):
        cvae.loss(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        cvae.loss(x, torch.tensor([0, 1, 2]))


def test_torch_nn_state_dict_loads_into_fastgen_model():
    # A checkpoint saved from the eager model loads unchanged, and the outputs agree.
    twin = eager.ConvVAE(image_size=8, base_channels=4, latent_dim=3)
    fast = models.ConvVAE(image_size=8, base_channels=4, latent_dim=3)
    fast.load_state_dict(twin.state_dict())
    x, eps = torch.rand(2, 1, 8, 8), torch.randn(2, 3)
    assert_matches_eager(fast(x, eps), lambda: twin(x, eps))


def test_fastgen_models_namespace():
    assert fastgen.models.VAE is models.VAE


def test_autoencoder_matches_eager_twin():
    torch.manual_seed(0)
    fast, twin = twin_pair(models.AutoEncoder, eager.AutoEncoder, 64, 32, 4)
    x = torch.rand(9, 1, 8, 8)
    assert_training_step_matches(fast, twin, lambda m: m.loss(x))
    assert fast(x).shape == (9, 64) and fast.encode(x).shape == (9, 4)
    # reconstruction error is a sum of squares over the features, averaged over the batch
    torch.testing.assert_close(fast.loss(x), ((fast(x) - x.flatten(1)) ** 2).sum(1).mean())
    assert op_namespaces(lambda: twin.loss(x).backward()) == {"aten"}
