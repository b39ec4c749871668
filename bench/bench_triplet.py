"""pytest-benchmark: Siamese losses (fastgen vs eager vs torch.compile).

    pytest bench/bench_triplet.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("siamese"))
def test_siamese(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
