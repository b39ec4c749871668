"""pytest-benchmark: PixelShuffle + PReLU and the SRResNet training step (fastgen vs eager vs torch.compile).

    pytest bench/bench_pixel_shuffle.py --benchmark-only

torch.compile of the whole SRResNet training step takes about a minute to compile on 2 cores,
so this file (which `make test` runs once) leaves it to fastgen-bench.
"""
import pytest

from bench._cases import params, run

PARAMS = [p for p in params("pixel_shuffle") + params("srgan")
          if not (p.values[0].name == "srresnet_train" and p.values[3] == "compile")]


@pytest.mark.parametrize("case,shape,pass_name,impl", PARAMS)
def test_pixel_shuffle(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
