"""pytest-benchmark: VAE reparameterization + KL and the MLP VAE training step (fastgen vs eager
vs torch.compile).

    pytest bench/bench_reparam_kl.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("vae"))
def test_reparam_kl(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
