"""Measurement: interleaved timing of several implementations, peak memory of one call,
and the copy bandwidth the roofline is measured against."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sample(fn: Callable[[], object], inner: int) -> float:
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def _inner_count(fn: Callable[[], object], min_sample_s: float) -> int:
    """Calls per sample, so that one sample lasts at least min_sample_s (timer resolution and
    Python overhead then stay small against what is timed)."""
    once = _sample(fn, 1)
    return max(1, min(10_000, int(min_sample_s / max(once, 1e-7)) + 1))


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, min_sample_s: float = 2e-3,
                     warmup: int = 2) -> dict[str, dict]:
    """Times every callable `repeats` times, round-robin with a rotating order, so that drift
    and noise on a shared machine hit all of them alike. Returns per name the median seconds
    per call, the quartiles, and the samples."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    inner = {name: _inner_count(fn, min_sample_s) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            samples[name].append(_sample(fns[name], inner[name]))
    out = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
        out[name] = {"median_s": statistics.median(xs), "p25_s": q[0], "p75_s": q[2],
                     "calls_per_sample": inner[name], "samples_s": xs}
    return out


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak of the bytes allocated through torch's CPU allocator during one call of fn,
    above what was live before it (from the profiler's allocation events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


_copy_cache: dict[int, float] = {}


def copy_seconds(nbytes: int, repeats: int = 15) -> float:
    """Median time torch takes to copy nbytes / 2 bytes (reading and writing nbytes in all):
    the memory roofline for a kernel that must move nbytes, measured on this machine at the
    same size (so caches help the roofline exactly as much as they help the kernel)."""
    key = max(4096, int(nbytes) // 2 // 4 * 4)
    if key not in _copy_cache:
        src = torch.empty(key // 4, dtype=torch.float32).fill_(1.0)
        dst = torch.empty_like(src)
        result = time_interleaved({"copy": lambda: dst.copy_(src)}, repeats=repeats, min_sample_s=1e-3)
        _copy_cache[key] = result["copy"]["median_s"]
    return _copy_cache[key]


def copy_bandwidth_gbps(nbytes: int = 256 * 2**20) -> float:
    """Copy bandwidth (bytes read + written per second, in GB/s) at a large size."""
    return nbytes / copy_seconds(nbytes) / 1e9
