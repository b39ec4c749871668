"""Measurement: interleaved timing of several implementations, peak memory of one call,
and the copy bandwidth the roofline is measured against, on the CPU (wall clock) or on a CUDA
device (CUDA events, L2 flushed before each call of a memory-bound case).

The device-specific parts are a Timer: `for_device("cpu")` gives CpuTimer, `for_device("cuda")`
CudaTimer. CudaTimer takes the torch.cuda-like module it uses as an argument, so that its code
runs (and is tested) on a machine without a GPU with a stand-in (tests/test_bench_device.py).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Callable

import torch


class CpuTimer:
    """Wall-clock timing on the CPU (time.perf_counter around `inner` back-to-back calls)."""

    name = "cpu"  # what the results call the device
    device = "cpu"  # where the tensors live
    method = "perf_counter"
    flushes_l2 = False

    def __init__(self):
        self._copy_cache: dict[int, dict] = {}

    def synchronize(self) -> None:
        pass

    def sample(self, fn: Callable[[], object], inner: int, flush: bool = False) -> float:
        """Seconds per call of fn over `inner` back-to-back calls (flush: ignored on the CPU,
        whose caches help the kernel and the copy roofline alike)."""
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - start) / inner

    def warmup(self, fn: Callable[[], object], calls: int) -> None:
        for _ in range(calls):
            fn()

    def max_inner(self, flush: bool) -> int:
        """The most calls one sample may hold."""
        return 10_000

    def peak_memory_bytes(self, fn: Callable[[], object]) -> int:
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

    def page_faults_per_call(self, fn: Callable[[], object], calls: int = 2) -> float:
        """Minor page faults of this process per call of fn (getrusage): what a malloc that hands
        big blocks back to the kernel costs, counted rather than timed (a count does not depend
        on what else the machine is running)."""
        import resource

        fn()  # settle caches and the allocator
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(calls):
            fn()
        self.synchronize()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls

    def copy_seconds(self, nbytes: int, repeats: int = 15) -> float:
        """Median time torch takes to copy nbytes / 2 bytes (reading and writing nbytes in all)
        on this timer's device: the memory roofline for a kernel that must move nbytes, measured
        in the same run at the same size (on the CPU caches help the roofline exactly as much as
        they help the kernel; on CUDA the L2 is flushed before each copy as before each call of
        a memory-bound kernel)."""
        key = max(4096, int(nbytes) // 2 // 4 * 4)
        if key not in self._copy_cache:
            src = torch.empty(key // 4, dtype=torch.float32, device=self.device).fill_(1.0)
            dst = torch.empty_like(src)
            result = time_interleaved(
                {"copy": lambda: dst.copy_(src)}, repeats=repeats, min_sample_s=1e-3, timer=self, flush=True
            )
            self._copy_cache[key] = result["copy"]
        return self._copy_cache[key]["median_s"]

    def copy_min_seconds(self, nbytes: int, repeats: int = 15) -> float:
        """The best sample of the same copy (see time_interleaved's min_s)."""
        self.copy_seconds(nbytes, repeats)
        return self._copy_cache[max(4096, int(nbytes) // 2 // 4 * 4)]["min_s"]

    def environment(self) -> dict:
        return {"device": self.name, "timer": self.method}


class CudaTimer(CpuTimer):
    """CUDA-event timing as triton.testing.do_bench does it: with `flush`, an event pair around
    each call and a 256 MiB buffer zeroed before it (a memory-bound kernel then reads from DRAM,
    not from the previous call's L2: 50 MiB on an H100); without, one event pair spans the
    `inner` calls. Peak memory from torch.cuda.max_memory_allocated; the roofline from a
    device-to-device copy timed the same way in the same run.

    cuda: the torch.cuda-like module used (Event, synchronize, reset_peak_memory_stats,
    max_memory_allocated, memory_allocated, get_device_name, get_device_properties); device:
    where the flush buffer and the copy's tensors live. Both default to the real GPU."""

    name = "cuda"
    method = "cuda-events"
    flushes_l2 = True
    FLUSH_BYTES = 256 * 2**20

    def __init__(self, cuda=None, device: str = "cuda", warmup_s: float = 25e-3, flush_bytes: int = FLUSH_BYTES):
        super().__init__()
        self.cuda = torch.cuda if cuda is None else cuda
        self.device = device
        self.warmup_s = warmup_s
        self.flush_bytes = flush_bytes
        self._flush_buffer = None

    def synchronize(self) -> None:
        self.cuda.synchronize()

    def _flush(self) -> None:
        if self._flush_buffer is None:
            self._flush_buffer = torch.empty(self.flush_bytes // 4, dtype=torch.int32, device=self.device)
        self._flush_buffer.zero_()

    def sample(self, fn: Callable[[], object], inner: int, flush: bool = False) -> float:
        Event = self.cuda.Event
        if flush:
            pairs = [(Event(enable_timing=True), Event(enable_timing=True)) for _ in range(inner)]
            for start, end in pairs:
                self._flush()
                start.record()
                fn()
                end.record()
            self.cuda.synchronize()
            return sum(start.elapsed_time(end) for start, end in pairs) / inner / 1e3  # elapsed_time: ms
        start, end = Event(enable_timing=True), Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        self.cuda.synchronize()
        return start.elapsed_time(end) / inner / 1e3

    def max_inner(self, flush: bool) -> int:
        # With the flush every call has its own event pair (no timer-resolution reason to batch
        # calls) and costs a 256 MiB memset: 10 calls per sample, as do_bench's ~100 in all.
        return 10 if flush else 10_000

    def warmup(self, fn: Callable[[], object], calls: int) -> None:
        """At least `calls` calls and at least warmup_s of them (Triton's autotuning and
        torch.compile's compilation already ran at the runner's first, checked call; this
        settles clocks and the caching allocator)."""
        self.synchronize()
        begin = time.perf_counter()
        done = 0
        while done < calls or (time.perf_counter() - begin < self.warmup_s and done < 1000):
            fn()
            done += 1
        self.synchronize()

    def peak_memory_bytes(self, fn: Callable[[], object]) -> int:
        """Peak bytes allocated on the device during one call, above what was live before it."""
        self.synchronize()
        self.cuda.reset_peak_memory_stats()
        before = self.cuda.memory_allocated()
        fn()
        self.synchronize()
        return max(0, self.cuda.max_memory_allocated() - before)

    def environment(self) -> dict:
        env = super().environment()
        try:
            props = self.cuda.get_device_properties(0)
            env.update(
                {
                    "device_name": self.cuda.get_device_name(0),
                    "capability": f"{props.major}.{props.minor}",
                    "memory_GiB": round(props.total_memory / 2**30, 1),
                    "multiprocessors": props.multi_processor_count,
                }
            )
        except Exception as exc:  # noqa: BLE001 - recorded, never fatal
            env["device_error"] = f"{type(exc).__name__}: {exc}"
        env["torch_cuda"] = torch.version.cuda
        try:
            import triton

            env["triton"] = triton.__version__
        except ImportError:
            env["triton"] = None
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            env["driver"] = out.splitlines()[0] if out else None
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
        env["l2_flush_bytes"] = self.flush_bytes
        return env


DEVICES = ("cpu", "cuda")


def for_device(device: str, cuda=None) -> CpuTimer:
    """The timer for `device`: CpuTimer for "cpu", CudaTimer for "cuda". cuda: a stand-in for
    torch.cuda (tests), whose `tensor_device` names where its tensors live and `flush_bytes` the
    size of its L2 flush. A CUDA request without a usable GPU is a SystemExit with the one-line
    reason."""
    if device == "cpu":
        return CpuTimer()
    if device == "cuda":
        if cuda is not None:
            return CudaTimer(
                cuda=cuda,
                device=getattr(cuda, "tensor_device", "cuda"),
                flush_bytes=getattr(cuda, "flush_bytes", CudaTimer.FLUSH_BYTES),
            )
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
            raise SystemExit(f"fastgen-bench: --device cuda: {why} (torch {torch.__version__})")
        return CudaTimer()
    raise SystemExit(f"fastgen-bench: --device must be one of {', '.join(DEVICES)}, got {device!r}")


_CPU = CpuTimer()


def _inner_count(fn: Callable[[], object], min_sample_s: float, timer: CpuTimer = _CPU, flush: bool = False) -> int:
    """Calls per sample, so that one sample lasts at least min_sample_s (timer resolution and
    Python overhead then stay small against what is timed)."""
    once = timer.sample(fn, 1, flush)
    return max(1, min(timer.max_inner(flush), int(min_sample_s / max(once, 1e-7)) + 1))


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    min_sample_s: float = 2e-3,
    warmup: int = 2,
    timer: CpuTimer | None = None,
    flush: bool = False,
) -> dict[str, dict]:
    """Times every callable `repeats` times, round-robin with a rotating order, so that drift
    and noise on a shared machine hit all of them alike. Returns per name the median seconds
    per call, the quartiles, and the samples. timer: CpuTimer (the default) or CudaTimer;
    flush: empty the device's L2 before each call (CUDA, memory-bound cases)."""
    timer = _CPU if timer is None else timer
    for fn in fns.values():
        timer.warmup(fn, warmup)
    inner = {name: _inner_count(fn, min_sample_s, timer, flush) for name, fn in fns.items()}
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            samples[name].append(timer.sample(fns[name], inner[name], flush))
    out = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
        # min_s: the best sample. On a shared machine the samples are bimodal (clean ones, and
        # ones that lost the CPU to another process for a scheduler tick); the median is the
        # headline, the best sample the estimate of the uncontended time.
        out[name] = {
            "median_s": statistics.median(xs),
            "min_s": min(xs),
            "p25_s": q[0],
            "p75_s": q[2],
            "calls_per_sample": inner[name],
            "samples_s": xs,
        }
    return out


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """CpuTimer.peak_memory_bytes (kept as a function for callers of the CPU suite)."""
    return _CPU.peak_memory_bytes(fn)


def copy_seconds(nbytes: int, repeats: int = 15) -> float:
    """CpuTimer.copy_seconds on the CPU."""
    return _CPU.copy_seconds(nbytes, repeats)


def copy_bandwidth_gbps(nbytes: int = 256 * 2**20, timer: CpuTimer | None = None) -> float:
    """Copy bandwidth (bytes read + written per second, in GB/s) at a large size on timer's device."""
    timer = _CPU if timer is None else timer
    return nbytes / timer.copy_seconds(nbytes) / 1e9
