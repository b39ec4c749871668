"""fastgen.models SiameseNet and ArcFaceNet against their eager twins (fastgen.reference.models)."""

import pytest
import torch

import fastgen
from fastgen import models
from fastgen.reference import models as eager
from tests._models import assert_matches_eager, assert_training_step_matches, op_namespaces, twin_pair

SIAMESE = dict(in_channels=1, image_size=12, embedding_size=16, width=4)
ARCFACE = dict(num_classes=20, in_channels=3, image_size=8, embedding_size=12, width=4, s=16.0, m=0.5)


def _siamese_loss(x1, x2, y, a, p, n, labels):
    def loss_of(model):
        return (
            model.pair_loss(x1, x2, y) + model.triplet_loss(a, p, n) + model.batch_hard_loss(torch.cat([a, p]), labels)
        )

    return loss_of


def _siamese_batch():
    x1, x2, a, p, n = (torch.rand(6, 1, 12, 12) for _ in range(5))
    y = torch.tensor([1, 0, 1, 0, 0, 1])
    labels = torch.arange(6).repeat(2)  # anchor i and positive i share label i
    return x1, x2, y, a, p, n, labels


def test_siamese_training_step_matches_eager_twin():
    fast, twin = twin_pair(models.SiameseNet, eager.SiameseNet, **SIAMESE)
    assert_training_step_matches(fast, twin, _siamese_loss(*_siamese_batch()))


@pytest.mark.parametrize("s,m", [(16.0, 0.5), (64.0, 0.3)])
def test_arcface_training_step_matches_eager_twin(s, m):
    kwargs = dict(ARCFACE, s=s, m=m)
    fast, twin = twin_pair(models.ArcFaceNet, eager.ArcFaceNet, **kwargs)
    x, labels = torch.rand(10, 3, 8, 8), torch.randint(0, 20, (10,))
    assert_training_step_matches(fast, twin, lambda model: model.loss(x, labels))


def test_fastgen_models_run_fastgen_ops_and_twins_run_none():
    batch = _siamese_batch()
    fast, twin = twin_pair(models.SiameseNet, eager.SiameseNet, **SIAMESE)
    assert "fastgen" in op_namespaces(lambda: _siamese_loss(*batch)(fast).backward())
    assert "fastgen" not in op_namespaces(lambda: _siamese_loss(*batch)(twin).backward())
    fast, twin = twin_pair(models.ArcFaceNet, eager.ArcFaceNet, **ARCFACE)
    x, labels = torch.rand(4, 3, 8, 8), torch.randint(0, 20, (4,))
    assert "fastgen" in op_namespaces(lambda: fast.loss(x, labels).backward())
    assert "fastgen" not in op_namespaces(lambda: twin.loss(x, labels).backward())
    for model in (twin, eager.SiameseNet(**SIAMESE)):
        assert not any(type(mod).__module__.startswith("fastgen.nn") for mod in model.modules())


def test_torch_nn_state_dict_loads_into_fastgen_models():
    twin = eager.ArcFaceNet(**ARCFACE).eval()
    fast = models.ArcFaceNet(**ARCFACE).eval()
    fast.load_state_dict(twin.state_dict())
    assert "head.weight" in fast.state_dict()
    x = torch.rand(3, 3, 8, 8)
    assert_matches_eager(fast(x), lambda: twin(x))
    assert_matches_eager(fast.cosine(x), lambda: twin.cosine(x))
    twin_s = eager.SiameseNet(**SIAMESE).eval()
    fast_s = models.SiameseNet(**SIAMESE).eval()
    fast_s.load_state_dict(twin_s.state_dict())
    x1, x2 = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    assert_matches_eager(fast_s.distance(x1, x2), lambda: twin_s.distance(x1, x2))


def test_shapes_and_bad_arguments():
    model = models.SiameseNet(**SIAMESE)
    e1, e2 = model(torch.rand(3, 1, 12, 12), torch.rand(3, 1, 12, 12))
    assert e1.shape == e2.shape == (3, 16)
    with pytest.raises(ValueError, match="image_size must be a multiple of 4"):
        models.SiameseNet(image_size=30)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        models.ArcFaceNet(0)
    net = models.ArcFaceNet(**ARCFACE)
    with pytest.raises(RuntimeError, match=r"labels must be class indices in \[0, 20\)"):
        net.loss(torch.rand(2, 3, 8, 8), torch.tensor([0, 20]))
    assert fastgen.models.ArcFaceNet is models.ArcFaceNet
