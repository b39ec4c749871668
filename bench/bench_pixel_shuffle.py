"""pytest-benchmark: PixelShuffle + PReLU and the SRResNet training step (fastgen vs eager vs torch.compile).

    pytest bench/bench_pixel_shuffle.py --benchmark-only
"""
import pytest

from bench._cases import params, run


@pytest.mark.parametrize("case,shape,pass_name,impl", params("pixel_shuffle") + params("srgan"))
def test_pixel_shuffle(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
