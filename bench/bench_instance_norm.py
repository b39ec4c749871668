"""pytest-benchmark: instance norm + activation (+residual), fastgen vs eager vs torch.compile.
(The CycleGAN / pix2pix generator training steps run in fastgen-bench: families "cyclegan", "pix2pix".)

    pytest bench/bench_instance_norm.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("instance_norm"))
def test_instance_norm(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
