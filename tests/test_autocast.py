"""fastgen under torch.autocast (CPU bfloat16): an autocast region hands the fused ops tensors of
two dtypes (a bfloat16 activation beside a float32 input, parameter or target). Each op's
autocast kernel (csrc/autocast.cpp) brings the tensors that must agree to one dtype: the widest
(as eager's type promotion would), PReLU's weight to its input's dtype (as autocast runs
torch's prelu in the lower precision); instance norm keeps float32 parameters. Outside autocast
a mix is still a clear error."""

import pytest
import torch

from fastgen import functional as F
from fastgen import models

BF16, F32 = torch.bfloat16, torch.float32


def _r(*shape, dtype=F32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# name -> (fn, inputs, dtype each input is brought to under autocast)
CASES = {
    "reparameterize_kl": (
        lambda mu, lv, eps: F.reparameterize_kl(mu, lv, eps),
        (_r(4, 8, dtype=BF16), _r(4, 8, seed=1), _r(4, 8, seed=2)),
        (F32, F32, F32),
    ),
    "kl_normal": (lambda mu, lv: F.kl_normal(mu, lv), (_r(4, 8, dtype=BF16), _r(4, 8, seed=1)), (F32, F32)),
    "affine_coupling": (
        lambda x, s, t: F.affine_coupling(x, s, t, mask="checkerboard"),
        (_r(2, 4, 3, 3), _r(2, 4, 3, 3, dtype=BF16, seed=1), _r(2, 4, 3, 3, dtype=BF16, seed=2)),
        (F32, F32, F32),
    ),
    "instance_norm": (
        lambda x, w, res: F.instance_norm(x, weight=w, residual=res, activation="relu"),
        (_r(2, 4, 3, 3, dtype=BF16), _r(4, seed=1), _r(2, 4, 3, 3, seed=2)),
        (F32, F32, F32),
    ),
    "pixel_shuffle_prelu": (
        lambda x, w: F.pixel_shuffle_prelu(x, w, 2),
        (_r(2, 8, 3, 3, dtype=BF16), _r(2, seed=1)),
        (BF16, BF16),
    ),
    "interpolate": (
        lambda real, fake, alpha: F.interpolate(real, fake, alpha),
        (_r(2, 3, 4, 4), _r(2, 3, 4, 4, dtype=BF16, seed=1), torch.rand(2)),
        (F32, F32, F32),
    ),
    "margin_cross_entropy": (
        lambda e, w: F.margin_cross_entropy(e, w, torch.tensor([1, 2, 3, 4]), s=16.0),
        (_r(4, 8, dtype=BF16), _r(10, 8, seed=1)),
        (F32, F32),
    ),
    "triplet_margin_loss": (
        lambda a, p, n: F.triplet_margin_loss(a, p, n),
        (_r(4, 8, dtype=BF16), _r(4, 8, seed=1), _r(4, 8, seed=2)),
        (F32, F32, F32),
    ),
    "contrastive_loss": (
        lambda a, b: F.contrastive_loss(a, b, torch.tensor([0.0, 1, 0, 1])),
        (_r(4, 8, dtype=BF16), _r(4, 8, seed=1)),
        (F32, F32),
    ),
}


def _outputs_and_grads(fn, inputs):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    sum(o.float().sum() for o in outs).backward()
    return [o.detach() for o in outs], [x.grad for x in inputs]


@pytest.mark.parametrize("name", sorted(CASES))
def test_autocast_brings_inputs_to_one_dtype(name):
    fn, inputs, dtypes = CASES[name]
    with torch.autocast("cpu", dtype=BF16):
        outs, grads = _outputs_and_grads(fn, inputs)
    # The same op, outside autocast, on inputs cast by hand as the autocast kernel casts them.
    want_outs, _ = _outputs_and_grads(fn, [x.to(d) for x, d in zip(inputs, dtypes)])
    for got, want in zip(outs, want_outs):
        assert got.dtype == want.dtype and torch.equal(got, want), name
    for x, g in zip(inputs, grads):  # gradients reach every input in its own dtype
        assert g is not None and g.dtype == x.dtype and torch.isfinite(g).all(), name


@pytest.mark.parametrize("name", sorted(CASES))
def test_mixed_dtypes_outside_autocast_are_a_clear_error(name):
    fn, inputs, _ = CASES[name]
    with pytest.raises(TypeError, match=r"fastgen\.\w+: \w+ must have the dtype of \w+"):
        fn(*inputs)


@pytest.mark.parametrize(
    "build,loss",
    [
        (
            lambda: models.WGANGP(image_size=16, g_features=4, d_features=4, latent_dim=8),
            lambda m: m.critic_loss(torch.randn(2, 3, 16, 16), torch.randn(2, 8)),
        ),
        (lambda: models.SRResNet(num_blocks=1, channels=8), lambda m: m(torch.rand(1, 3, 6, 6)).square().mean()),
        (lambda: models.RealNVP.small(1, 8), lambda m: m.loss(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))),
    ],
)
def test_model_steps_run_under_bfloat16_autocast(build, loss):
    torch.manual_seed(0)
    model = build()
    with torch.autocast("cpu", dtype=BF16):
        value = loss(model)
    value.float().backward()
    assert torch.isfinite(value.float())
    for name, p in model.named_parameters():
        assert p.grad is None or (p.grad.dtype == p.dtype and torch.isfinite(p.grad).all()), name
