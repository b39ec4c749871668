"""pytest-benchmark: RealNVP affine coupling and training step (fastgen vs eager vs torch.compile).

    pytest bench/bench_coupling.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("realnvp"))
def test_coupling(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
