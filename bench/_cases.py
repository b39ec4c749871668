"""Turns the registered benchmark cases (fastgen.bench.registry) into pytest-benchmark tests,
so `pytest bench/` and `fastgen-bench` time exactly the same callables."""
from __future__ import annotations

import pytest
import torch

from fastgen.bench.registry import AUTOCAST_TAG, cases
from fastgen.bench.runner import IMPLS, implementations, pass_callable


def params(family: str, size: str = "quick"):
    """pytest params (case, shape, pass, impl) of every case of `family`. The bfloat16-autocast
    twins of the whole-model rows run in fastgen-bench only (`fastgen-bench --ops <name>`): they
    would double the model steps `make test` runs once each."""
    out = []
    for case in cases().values():
        if case.family != family or AUTOCAST_TAG[1:-1] in case.name:
            continue
        for shape in case.shapes[size]:
            for pass_name in case.passes:
                for impl in IMPLS:
                    label = f"{case.name}-{'x'.join(map(str, shape))}-{pass_name}-{impl}"
                    out.append(pytest.param(case, shape, pass_name, impl, id=label))
    return out


def run(benchmark, case, shape, pass_name, impl, dtype=torch.float32):
    torch._dynamo.reset()  # see fastgen/bench/runner.py: no case inherits another's compile cache
    work = case.make(shape, dtype)
    fn = implementations(work, (impl,))[impl]
    call = pass_callable(fn, work, pass_name, impl)
    result = call()  # warm up (and compile, for torch.compile)
    problem = work.check(impl, pass_name, result) if work.check is not None else None
    if problem:  # fastgen computing a wrong result fails; another contender's is what it can't do
        (pytest.fail if impl == "fastgen" else pytest.skip)(f"{impl} computes a wrong result: {problem}")
    benchmark.group = f"{case.name} {'x'.join(map(str, shape))} {pass_name}"
    benchmark.extra_info["min_bytes"] = work.min_bytes[pass_name]
    benchmark(call)
