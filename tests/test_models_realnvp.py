"""fastgen.models RealNVP and RealNVP2d against their eager twins (fastgen.reference.models)."""

import math

import pytest
import torch

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import assert_matches_eager, assert_training_step_matches, op_namespaces, twin_pair


def _randomize_scales(model):
    # The coupling scales start at zero (so s has no gradient at first); give them values so the
    # test exercises every path.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(0.5 * torch.randn_like(p))


def _pair(fast_cls, twin_cls, *args, **kwargs):
    fast, twin = twin_pair(fast_cls, twin_cls, *args, **kwargs)
    _randomize_scales(fast)
    twin.load_state_dict(fast.state_dict())
    return fast, twin


def _images(batch, channels, size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, channels, size, size), generator=gen) / 255.0
    return x, torch.rand(x.shape, generator=gen)


def moons(n, noise=0.1, seed=0):
    """Two interleaving half circles (scikit-learn's make_moons when installed)."""
    try:
        from sklearn.datasets import make_moons
    except ImportError:
        gen = torch.Generator().manual_seed(seed)
        t = torch.rand(n, generator=gen) * math.pi
        upper = torch.rand(n, generator=gen) < 0.5
        x = torch.where(upper, torch.cos(t), 1 - torch.cos(t))
        y = torch.where(upper, torch.sin(t), 0.5 - torch.sin(t))
        return torch.stack([x, y], 1) + noise * torch.randn(n, 2, generator=gen)
    data, _ = make_moons(n, noise=noise, random_state=seed)
    return torch.as_tensor(data, dtype=torch.float32)


IMAGE_CASES = [
    (dict(in_channels=1, image_size=8), "small"),
    (dict(in_channels=3, image_size=8, num_scales=3, mid_channels=8, num_blocks=1), "full"),
    (dict(in_channels=1, image_size=28), "small"),
]


def _make(kwargs, kind, cls):
    return cls.small(**kwargs) if kind == "small" else cls(**kwargs)


@pytest.mark.parametrize("kwargs,kind", IMAGE_CASES)
def test_realnvp_training_step_matches_eager_twin(kwargs, kind):
    torch.manual_seed(0)
    fast, twin = _pair(lambda: _make(kwargs, kind, models.RealNVP), lambda: _make(kwargs, kind, eager.RealNVP))
    x, noise = _images(2 if kwargs["image_size"] > 8 else 4, kwargs["in_channels"], kwargs["image_size"])
    loss = assert_training_step_matches(fast, twin, lambda m: m.loss(x, noise))
    assert 0 < loss.item() < 100


def test_realnvp2d_training_step_matches_eager_twin():
    torch.manual_seed(0)
    fast, twin = _pair(models.RealNVP2d, eager.RealNVP2d)
    x = moons(64)
    assert_training_step_matches(fast, twin, lambda m: m.loss(x))
    fast, twin = _pair(models.RealNVP2d, eager.RealNVP2d, features=6, hidden=16, num_couplings=3)
    x6 = torch.randn(10, 6)
    assert_training_step_matches(fast, twin, lambda m: m.loss(x6))


def test_fastgen_model_runs_fastgen_ops_and_twin_runs_none():
    torch.manual_seed(0)
    fast, twin = _pair(models.RealNVP.small, eager.RealNVP.small, 1, 4, mid_channels=4, num_blocks=1)
    x, noise = _images(2, 1, 4)
    assert "fastgen" in op_namespaces(lambda: fast.loss(x, noise).backward())
    assert "fastgen" not in op_namespaces(lambda: twin.loss(x, noise).backward())
    assert not any(type(m).__module__.startswith("fastgen.nn") for m in twin.modules())
    fast, twin = _pair(models.RealNVP2d, eager.RealNVP2d)
    assert "fastgen" in op_namespaces(lambda: fast.loss(torch.randn(4, 2)).backward())
    assert "fastgen" not in op_namespaces(lambda: twin.loss(torch.randn(4, 2)).backward())


@pytest.mark.parametrize("kwargs,kind", IMAGE_CASES[:2])
def test_realnvp_reconstructs_and_logdets_cancel(kwargs, kind):
    torch.manual_seed(0)
    model = _make(kwargs, kind, models.RealNVP)
    _randomize_scales(model)
    model.eval()
    x, noise = _images(3, kwargs["in_channels"], kwargs["image_size"])
    x = (x * 255 + noise) / 256
    with torch.no_grad():
        z, logdet = model(x)
        back, inv_logdet = model.inverse(z)
    assert z.shape == (3, model.num_dims)
    assert (back - x).abs().max() < 1e-4
    torch.testing.assert_close(inv_logdet, -logdet, rtol=1e-4, atol=1e-3)


def test_realnvp2d_reconstructs():
    torch.manual_seed(0)
    model = models.RealNVP2d()
    _randomize_scales(model)
    x = moons(100)
    z, logdet = model(x)
    back, inv_logdet = model.inverse(z)
    assert (back - x).abs().max() < 1e-4
    torch.testing.assert_close(inv_logdet, -logdet, rtol=1e-5, atol=1e-4)


def test_logdet_is_the_jacobian_log_determinant():
    # Brute force on a tiny image model (D = 16) and on the 2-D flow, in float64, eval mode.
    torch.manual_seed(0)
    model = models.RealNVP.small(1, 4, mid_channels=4, num_blocks=1).double().eval()
    _randomize_scales(model)
    x = ((torch.randint(0, 256, (1, 1, 4, 4)) + torch.rand(1, 1, 4, 4)) / 256).double()
    jac = torch.autograd.functional.jacobian(lambda u: model(u)[0], x).reshape(16, 16)
    torch.testing.assert_close(torch.linalg.slogdet(jac)[1], model(x)[1][0])
    flow = models.RealNVP2d(hidden=8, num_couplings=4).double()
    _randomize_scales(flow)
    p = torch.randn(1, 2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda u: flow(u)[0], p).reshape(2, 2)
    torch.testing.assert_close(torch.linalg.slogdet(jac)[1], flow(p)[1][0])


def test_realnvp2d_density_integrates_to_one():
    torch.manual_seed(0)
    flow = models.RealNVP2d(hidden=16, num_couplings=4).double()
    _randomize_scales(flow)
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(0.3)  # a mild flow, so the grid below covers its mass
        g = torch.linspace(-8, 8, 401, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        mass = flow.log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(mass.item() - 1) < 1e-2


def test_realnvp2d_learns_two_moons():
    torch.manual_seed(0)
    flow = models.RealNVP2d(hidden=32, num_couplings=6)
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    data = moons(2000, noise=0.05)
    first = flow.loss(data).item()
    for step in range(80):
        batch = data[torch.randint(0, len(data), (256,))]
        opt.zero_grad()
        flow.loss(batch).backward()
        opt.step()
    last = flow.loss(data).item()
    assert last < first - 1.0 and last < 1.5, (first, last)
    samples = flow.sample(500, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (500, 2) and torch.isfinite(samples).all()


def test_realnvp_trains_on_small_images():
    torch.manual_seed(0)
    model = models.RealNVP.small(1, 8, mid_channels=8, num_blocks=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    # Blurry blobs: far from uniform, so a few steps must lower the bits per dim.
    base = torch.rand(32, 1, 4, 4)
    x = torch.nn.functional.interpolate(base, size=8, mode="bilinear", align_corners=False)
    x = (x * 255).round() / 255
    first = model.loss(x, torch.rand_like(x)).item()
    for _ in range(15):
        opt.zero_grad()
        model.loss(x).backward()
        opt.step()
    assert model.loss(x, torch.rand_like(x)).item() < first - 0.5


def test_sample_shapes_ranges_and_generator():
    model = models.RealNVP.small(1, 8).eval()
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 1, 8, 8) and torch.equal(a, b) and (a > -0.1).all() and (a < 1.1).all()
    flow = models.RealNVP2d()
    assert flow.sample(7).shape == (7, 2)


def test_bits_per_dim_and_log_prob():
    torch.manual_seed(0)
    model = models.RealNVP.small(1, 8).eval()
    x, noise = _images(2, 1, 8)
    lp = model.log_prob(x, noise)
    bpd = model.bits_per_dim(x, noise)
    torch.testing.assert_close(bpd, (-lp / 64 + math.log(256)) / math.log(2))
    torch.testing.assert_close(model.loss(x, noise), bpd.mean())
    xd = (x * 255 + noise) / 256
    torch.testing.assert_close(model.log_prob(xd, dequantize=False), lp)


def test_torch_nn_state_dict_loads_into_fastgen_model():
    # A checkpoint of the eager model loads unchanged into the fastgen one, and they agree.
    torch.manual_seed(0)
    twin = eager.RealNVP.small(1, 8)
    _randomize_scales(twin)
    fast = models.RealNVP.small(1, 8)
    fast.load_state_dict(twin.state_dict())
    fast.eval(), twin.eval()
    x, noise = _images(2, 1, 8)
    assert_matches_eager(fast.log_prob(x, noise), lambda: twin.log_prob(x, noise))


def test_cifar_default_architecture():
    model = models.RealNVP()
    assert model.image_shape == (3, 32, 32) and model.num_dims == 3072
    assert len(model.scales) == 1 and len(model.final_couplings) == 4
    assert len(model.scales[0].in_couplings) == 3 and len(model.scales[0].out_couplings) == 3
    conv = model.scales[0].in_couplings[0].conditioner
    assert conv.in_conv.out_channels == 64 and len(conv.blocks) == 8
    masks = [c.mask for c in model.scales[0].in_couplings] + [c.mask for c in model.scales[0].out_couplings]
    assert masks == ["checkerboard"] * 3 + ["channel"] * 3
    assert [c.mask_parity for c in model.final_couplings] == [0, 1, 0, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"image_size must be a multiple of 2\*\*\(num_scales - 1\) = 4"):
        models.RealNVP(image_size=30, num_scales=3)
    with pytest.raises(ValueError, match="num_scales must be at least 1"):
        models.RealNVP(num_scales=0)
    with pytest.raises(ValueError, match="features must be an even number"):
        models.RealNVP2d(features=3)
    model = models.RealNVP.small(1, 8)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\), got \(2, 1, 4, 4\)"):
        model.log_prob(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"z must have shape \(B, 64\)"):
        model.inverse(torch.randn(2, 10))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        models.RealNVP2d().log_prob(torch.randn(3, 3))


def test_fastgen_models_namespace():
    assert fastgen.models.RealNVP is models.RealNVP and fastgen.models.RealNVP2d is models.RealNVP2d
