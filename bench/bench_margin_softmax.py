"""pytest-benchmark: face recognition and Siamese losses (fastgen vs eager vs torch.compile).

    pytest bench/bench_margin_softmax.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("face"))
def test_face(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
