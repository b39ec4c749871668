"""pytest-benchmark: face recognition: the ArcFace margin cross-entropy and the ArcFaceNet
training step (fastgen vs eager vs torch.compile).

    pytest bench/bench_margin_softmax.py --benchmark-only

torch.compile of the whole ArcFaceNet step is left to fastgen-bench (minutes of compiling on 2
cores for a file `make test` runs once).
"""
import pytest

from bench._cases import params, run


PARAMS = [p for p in params("face") if not (p.values[0].name == "arcface_step" and p.values[3] == "compile")]


@pytest.mark.parametrize("case,shape,pass_name,impl", PARAMS)
def test_face(benchmark, case, shape, pass_name, impl):
    run(benchmark, case, shape, pass_name, impl)
