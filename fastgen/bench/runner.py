"""Runs registered cases: fastgen vs eager PyTorch vs torch.compile of the eager code, forward
and forward+backward, timed interleaved in one process."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Callable, Iterable

import torch

from fastgen.bench import allocator, timing
from fastgen.bench.registry import Case, Workload

IMPLS = ("fastgen", "eager", "compile")


def pass_callable(fn: Callable, work: Workload, pass_name: str, impl: str = "fastgen") -> Callable[[], object]:
    """A no-argument callable running one pass ('fwd' under no_grad, or 'fwd+bwd') of fn, the
    implementation named impl, on work."""
    inputs = work.inputs
    if pass_name == "fwd":

        def forward():
            with torch.no_grad():
                return fn(*inputs)

        return forward
    wrt = [inputs[i] for i in work.grad_inputs] + list(work.params.get(impl, ()))

    def forward_backward():
        outs = work.grad_outputs(fn(*inputs))
        # autograd.grad returns the gradients instead of accumulating into .grad, so every
        # call does the same work.
        return torch.autograd.grad(outs, wrt, work.upstream_grads)

    return forward_backward


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def environment() -> dict:
    import fastgen

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "fastgen": fastgen.build_info(),
        "allocator": allocator.describe(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "LD_PRELOAD", "OPENBLAS_CORETYPE") if k in os.environ},
    }


def implementations(work: Workload, impls: Iterable[str] = IMPLS) -> dict[str, Callable]:
    """The contenders: fastgen, the eager code, and torch.compile of that same eager code."""
    fns = {"fastgen": work.fastgen_fn, "eager": work.eager_fn}
    if "compile" in impls:
        fns["compile"] = torch.compile(work.eager_fn, dynamic=False)
    return {name: fns[name] for name in impls}


def make_workload(case: Case, shape: tuple, dtype: torch.dtype, device: str = "cpu") -> Workload:
    """case.make on `device` (the CPU cases' make(shape, dtype) is called as it always was)."""
    if device == "cpu":
        return case.make(shape, dtype)
    return case.make(shape, dtype, device=device)


def run_case(
    case: Case,
    shape: tuple,
    dtype: torch.dtype,
    repeats: int,
    impls: Iterable[str] = IMPLS,
    min_sample_s: float = 2e-3,
    timer: timing.CpuTimer | None = None,
) -> list[dict]:
    """Every pass of one case at one shape: a result row per pass. timer: timing.for_device(...)
    (default: the CPU's); on CUDA, memory-bound cases are timed with the L2 flushed before each call."""
    timer = timing.for_device("cpu") if timer is None else timer
    flush = timer.flushes_l2 and case.memory_bound
    # A fresh dynamo cache per case: cases built from the same eager function would otherwise
    # share its code object's cache and, past torch._dynamo's recompile limit, silently run the
    # eager code under the "compile" label.
    torch._dynamo.reset()
    try:
        work = make_workload(case, shape, dtype, timer.device)
        fns = implementations(work, impls)
    except Exception as exc:  # noqa: BLE001 - a case that cannot be built is a result, not the end of the run
        return [
            {
                "case": case.name,
                "family": case.family,
                "shape": list(shape),
                "dtype": str(dtype).replace("torch.", ""),
                "pass": pass_name,
                "device": timer.name,
                "timer": timer.method,
                "l2_flush": flush,
                "memory_bound": case.memory_bound,
                "error": _first_line(exc),
                "impls": {},
            }
            for pass_name in case.passes
        ]
    rows = []
    for pass_name in case.passes:
        row = {
            "case": case.name,
            "family": case.family,
            "shape": list(shape),
            "dtype": str(dtype).replace("torch.", ""),
            "pass": pass_name,
            "device": timer.name,
            "timer": timer.method,
            "l2_flush": flush,
            "memory_bound": case.memory_bound,
            "min_bytes": work.min_bytes[pass_name],
            "impls": {},
            # The machine's 1-minute load average as this row starts (these machines are shared).
            "loadavg_1m": os.getloadavg()[0],
        }
        runnable = {}
        for name in impls:
            call = pass_callable(fns[name], work, pass_name, name)
            try:
                result = call()  # first call: compiles (torch.compile) and autotunes (Triton); errors are reported
                timer.synchronize()
                problem = work.check(name, pass_name, result) if work.check is not None else None
                if problem:
                    raise RuntimeError(f"wrong result: {problem}")
                runnable[name] = call
            except Exception as exc:  # noqa: BLE001 - a contender failing is a result
                row["impls"][name] = {"error": _first_line(exc)}
        baselines = {
            f"baseline:{b}": per_pass[pass_name] for b, per_pass in work.baselines.items() if pass_name in per_pass
        }
        timed = timing.time_interleaved(
            {**runnable, **baselines}, repeats=repeats, min_sample_s=min_sample_s, timer=timer, flush=flush
        )
        for name, fn in baselines.items():
            stats = row.setdefault("baselines", {})[name.split(":", 1)[1]] = timed.pop(name)
            stats["peak_bytes"] = timer.peak_memory_bytes(fn)
        for name, stats in timed.items():
            stats["peak_bytes"] = timer.peak_memory_bytes(runnable[name])
            stats["page_faults_per_call"] = timer.page_faults_per_call(runnable[name])
            stats["gbps"] = row["min_bytes"] / stats["median_s"] / 1e9
            row["impls"][name] = stats
        roofline_s = timer.copy_seconds(row["min_bytes"])
        row["roofline_s"] = roofline_s
        fg = row["impls"].get("fastgen", {})
        if "median_s" in fg:
            row["roofline_fraction"] = roofline_s / fg["median_s"]
            # Best copy sample over best fastgen sample: the uncontended estimate on a busy machine.
            row["roofline_fraction_best"] = timer.copy_min_seconds(row["min_bytes"]) / fg["min_s"]
            for other in ("eager", "compile"):
                if "median_s" in row["impls"].get(other, {}):
                    row[f"speedup_vs_{other}"] = row["impls"][other]["median_s"] / fg["median_s"]
        for stats in row.get("baselines", {}).values():
            # Each contender's time in units of the baseline's (fastgen 1.20 = 20% above it).
            stats["ratios"] = {n: s["median_s"] / stats["median_s"] for n, s in row["impls"].items() if "median_s" in s}
        rows.append(row)
    return rows
