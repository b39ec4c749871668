"""pytest-benchmark over every case fastgen-bench registers (fastgen.bench.registry), so that
`pytest bench` and `fastgen-bench` time exactly the same callables (fastgen, eager, torch.compile).

    pytest bench --benchmark-only                    # every case
    pytest bench --benchmark-only -k instance_norm   # one family

`make test` runs each once (--benchmark-disable): every case runs, and computes what eager does.
Left to fastgen-bench: the bfloat16-autocast twins of the whole-model rows, and torch.compile of
the whole-model rows (a minute or more of compiling each on 2 cores).
"""

from __future__ import annotations

import pytest
import torch

from fastgen.bench.registry import AUTOCAST_TAG, cases
from fastgen.bench.runner import IMPLS, implementations, pass_callable

_AUTOCAST = AUTOCAST_TAG[1:-1]
# The whole-model rows are the cases that have an autocast twin.
MODEL_ROWS = {name.replace(AUTOCAST_TAG, "").replace("," + _AUTOCAST, "") for name in cases() if _AUTOCAST in name}


def _params(size: str = "quick"):
    out = []
    for case in cases().values():
        if _AUTOCAST in case.name:
            continue
        for shape in case.shapes[size]:
            for pass_name in case.passes:
                for impl in IMPLS:
                    if impl == "compile" and case.name in MODEL_ROWS:
                        continue
                    label = f"{case.family}-{case.name}-{'x'.join(map(str, shape))}-{pass_name}-{impl}"
                    out.append(pytest.param(case, shape, pass_name, impl, id=label))
    return out


@pytest.mark.parametrize("case,shape,pass_name,impl", _params())
def test_case(benchmark, case, shape, pass_name, impl):
    torch._dynamo.reset()  # see fastgen/bench/runner.py: no case inherits another's compile cache
    work = case.make(shape, torch.float32)
    fn = implementations(work, (impl,))[impl]
    call = pass_callable(fn, work, pass_name, impl)
    result = call()  # warm up (and compile, for torch.compile)
    problem = work.check(impl, pass_name, result) if work.check is not None else None
    if problem:  # fastgen computing a wrong result fails; another contender's is what it can't do
        (pytest.fail if impl == "fastgen" else pytest.skip)(f"{impl} computes a wrong result: {problem}")
    benchmark.group = f"{case.name} {'x'.join(map(str, shape))} {pass_name}"
    benchmark.extra_info["min_bytes"] = work.min_bytes[pass_name]
    benchmark(call)
