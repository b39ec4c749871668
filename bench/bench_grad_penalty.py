"""pytest-benchmark: GAN training core (interpolation, gradient penalty, pixel norm, WGAN-GP critic
step; fastgen vs eager vs torch.compile).

    pytest bench/bench_grad_penalty.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("gan"))
def test_grad_penalty(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
