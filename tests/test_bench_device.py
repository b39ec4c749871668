"""`fastgen-bench --device cuda` plumbing, tested on the CPU: the timer is chosen by device, the
CUDA timer's code runs against a stand-in for torch.cuda (events on the wall clock, tensors on
the CPU), and a whole run writes the results schema and the report a GPU run would. A GPU run
then cannot die on a typo in this code."""

import json
import time
import types

import pytest
import torch

from fastgen.bench import timing
from fastgen.bench.__main__ import main
from fastgen.bench.registry import AUTOCAST_TAG, Case, Workload, cases
from fastgen.bench.runner import run_case


class FakeCuda:
    """The parts of torch.cuda CudaTimer uses; `log` records the order of events."""

    tensor_device = "cpu"
    flush_bytes = 1 << 16

    def __init__(self):
        self.log = []
        self.peak = 0
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.t = None

            def record(self):
                fake.log.append("record")
                self.t = time.perf_counter()

            def elapsed_time(self, end):  # milliseconds, as torch.cuda.Event's
                assert self.t is not None and end.t is not None, "elapsed_time of an event never recorded"
                return (end.t - self.t) * 1e3

        self.Event = Event

    def synchronize(self):
        self.log.append("sync")

    def reset_peak_memory_stats(self):
        self.log.append("reset_peak")
        self.peak = 0

    def memory_allocated(self):
        return 1000

    def max_memory_allocated(self):
        return 1000 + 4096

    def get_device_name(self, index):
        return "Fake GPU"

    def get_device_properties(self, index):
        return types.SimpleNamespace(major=9, minor=0, total_memory=80 * 2**30, multi_processor_count=132)


def test_timer_is_chosen_by_device():
    assert type(timing.for_device("cpu")) is timing.CpuTimer
    fake = FakeCuda()
    timer = timing.for_device("cuda", cuda=fake)
    assert type(timer) is timing.CudaTimer and timer.cuda is fake and timer.flush_bytes == fake.flush_bytes
    assert (timer.name, timer.method, timer.flushes_l2) == ("cuda", "cuda-events", True)
    with pytest.raises(SystemExit, match="--device must be one of cpu, cuda"):
        timing.for_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["--device", "cuda", "--ops", "reparam_kl", "--out", str(tmp_path)])
    message = str(info.value)
    assert message.startswith("fastgen-bench: --device cuda: ") and "\n" not in message
    assert not (tmp_path / "bench.json").exists()


def test_cuda_timer_flushes_l2_before_each_timed_call():
    fake = FakeCuda()
    timer = timing.for_device("cuda", cuda=fake)
    calls = []
    flushed = []
    timer._flush = lambda: (flushed.append(len(calls)), fake.log.append("flush"))  # noqa: E731
    fn = lambda: (calls.append(1), fake.log.append("call"))  # noqa: E731
    seconds = timer.sample(fn, 3, flush=True)
    assert seconds > 0 and len(calls) == 3
    # flush, start event, the call, end event; then one synchronize before reading the events.
    assert fake.log == ["flush", "record", "call", "record"] * 3 + ["sync"]
    fake.log.clear()
    timer.sample(fn, 4, flush=False)  # one event pair around back-to-back calls
    assert fake.log == ["record"] + ["call"] * 4 + ["record", "sync"]


def test_samples_with_the_flush_hold_at_most_ten_calls():
    timer = timing.for_device("cuda", cuda=FakeCuda())
    timer._flush = lambda: None  # noqa: E731
    assert timing._inner_count(lambda: None, 1.0, timer, flush=True) == 10
    assert timing._inner_count(lambda: None, 1.0, timer, flush=False) == 10_000
    assert timing._inner_count(lambda: None, 1.0, timing.for_device("cpu"), flush=True) == 10_000


def test_cuda_timer_flush_buffer_is_zeroed_on_its_device():
    timer = timing.for_device("cuda", cuda=FakeCuda())
    timer._flush()
    buf = timer._flush_buffer
    assert buf.device.type == "cpu" and buf.numel() * 4 == FakeCuda.flush_bytes and not buf.any()
    buf.fill_(7)
    timer._flush()
    assert timer._flush_buffer is buf and not buf.any()


def test_cuda_timer_peak_memory_and_environment():
    fake = FakeCuda()
    timer = timing.for_device("cuda", cuda=fake)
    assert timer.peak_memory_bytes(lambda: None) == 4096
    assert fake.log.index("reset_peak") < len(fake.log) - 1 and fake.log[-1] == "sync"
    env = timer.environment()
    assert env["device"] == "cuda" and env["timer"] == "cuda-events"
    assert env["device_name"] == "Fake GPU" and env["capability"] == "9.0" and env["l2_flush_bytes"] == 1 << 16
    assert "triton" in env and "driver" in env and "torch_cuda" in env


def _tiny_case(memory_bound: bool) -> Case:
    def make(shape, dtype, device="cpu"):
        x = torch.randn(shape, dtype=dtype, device=device)
        return Workload(
            inputs=(x,),
            fastgen_fn=lambda t: t * 2,
            eager_fn=lambda t: t + t,
            grad_inputs=(0,),
            grad_outputs=lambda out: (out,),
            upstream_grads=(torch.ones(shape, dtype=dtype),),
            min_bytes={"fwd": 2 * x.numel() * 4, "fwd+bwd": 4 * x.numel() * 4},
        )

    return Case(name="tiny", family="t", shapes={}, make=make, memory_bound=memory_bound)


@pytest.mark.parametrize("memory_bound", [True, False])
def test_run_case_on_the_cuda_timer(memory_bound):
    fake = FakeCuda()
    timer = timing.for_device("cuda", cuda=fake)
    flushes = []
    timer._flush = lambda: flushes.append(1)  # noqa: E731
    rows = run_case(_tiny_case(memory_bound), (64,), torch.float32, repeats=2, impls=("fastgen", "eager"), timer=timer)
    assert [r["pass"] for r in rows] == ["fwd", "fwd+bwd"]
    for r in rows:
        assert (r["device"], r["timer"], r["l2_flush"], r["memory_bound"]) == (
            "cuda",
            "cuda-events",
            memory_bound,
            memory_bound,
        )
        for stats in r["impls"].values():
            assert stats["median_s"] > 0 and stats["peak_bytes"] == 4096
        assert r["roofline_s"] > 0 and r["speedup_vs_eager"] > 0
    # The copy roofline is timed with the flush as well: there are flushes either way, but
    # a case that is not memory-bound has its own calls timed without.
    assert flushes
    assert "reset_peak" in fake.log


def test_a_case_that_cannot_be_built_is_a_result():
    def make(shape, dtype, device="cpu"):
        raise RuntimeError("no kernel for this device")

    rows = run_case(
        Case(name="broken", family="t", shapes={}, make=make),
        (4,),
        torch.float32,
        repeats=1,
        impls=("fastgen", "eager"),
        timer=timing.for_device("cuda", cuda=FakeCuda()),
    )
    assert [r["error"] for r in rows] == ["RuntimeError: no kernel for this device"] * 2
    from fastgen.bench import report

    table = report.markdown(rows)
    assert "| broken | 4 | float32 | fwd | failed | failed | failed |" in table
    assert "case failed on broken 4 fwd: RuntimeError: no kernel for this device" in table


def test_fastgen_bench_device_cuda_end_to_end(tmp_path, monkeypatch, capsys):
    # What `python -m fastgen.gpu_check` runs: --device cuda --out DIR, here on the stand-in.
    fake = FakeCuda()
    real_for_device = timing.for_device
    monkeypatch.setattr(timing, "for_device", lambda device, cuda=None: real_for_device(device, cuda=fake))
    out = tmp_path / "gpu"
    assert (
        main(
            [
                "--device",
                "cuda",
                "--out",
                str(out),
                "--ops",
                "reparam_kl",
                "--shapes",
                "16x8",
                "--repeats",
                "2",
                "--no-compile",
                "--strict",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| reparam_kl | 16x8 | float32 | fwd+bwd |" in table
    data = json.loads((out / "bench.json").read_text())
    env = data["environment"]
    assert env["device"] == "cuda" and env["timer"] == "cuda-events" and env["device_name"] == "Fake GPU"
    assert env["copy_bandwidth_GBps_256MiB"] > 0 and env["allocator"]["name"]
    for r in data["results"]:
        assert r["device"] == "cuda" and r["l2_flush"] is True and r["allocator"] == env["allocator"]["name"]
        assert set(r["impls"]) == {"fastgen", "eager"} and r["roofline_fraction"] > 0
    assert (out / "bench.md").read_text().startswith("| case |")
    assert (out / "bench.png").stat().st_size > 1000
    assert "record" in fake.log


def test_strict_exit_status_when_something_failed(tmp_path, monkeypatch):
    from fastgen.bench import runner

    monkeypatch.setattr(
        runner,
        "run_case",
        lambda case, shape, dtype, **kw: [
            {
                "case": case.name,
                "family": case.family,
                "shape": list(shape),
                "dtype": "float32",
                "pass": "fwd",
                "device": "cpu",
                "error": "RuntimeError: boom",
                "impls": {},
            }
        ],
    )
    args = ["--ops", "reparam_kl", "--shapes", "4x4", "--out", str(tmp_path), "--no-compile"]
    assert main(args) == 0
    assert main(args + ["--strict"]) == 1


def test_every_case_builds_on_another_device():
    # Every case's make takes device= and puts its tensors there ("meta": no data, no GPU needed).
    for case in cases().values():
        if AUTOCAST_TAG[1:-1] in case.name:  # autocast has no meta device; the wrapper is tested below
            continue
        shape = min(case.shapes["quick"], key=lambda s: torch.Size(s).numel())
        work = case.make(shape, torch.float32, device="meta")
        tensors = [t for t in work.inputs if isinstance(t, torch.Tensor)] + list(work.upstream_grads)
        tensors += [p for ps in work.params.values() for p in ps]
        assert all(t.device.type == "meta" for t in tensors), case.name


def test_autocast_variant_runs_under_bfloat16_autocast():
    seen = []
    base = _tiny_case(False)

    def make(shape, dtype, device="cpu"):
        work = base.make(shape, dtype, device)
        work.fastgen_fn = lambda t: (
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None),
            torch.mm(t, t),
        )[1]
        return work

    from fastgen.bench.registry import _CASES, autocast_variant

    case = autocast_variant(Case(name="tiny_mm", family="t", shapes={}, make=make, memory_bound=False))
    try:
        assert case.name == "tiny_mm" + AUTOCAST_TAG and case.tags["autocast"] == "bfloat16"
        work = case.make((8, 8), torch.float32)
        out = work.fastgen_fn(*work.inputs)
        assert seen == [torch.bfloat16] and out.dtype == torch.float32  # mm ran in bf16, returned in float32
    finally:
        _CASES.pop(case.name)
    # Every model row has its bfloat16 autocast twin.
    names = set(cases())
    for model in (
        "cyclegan_generator[train]",
        "pix2pix_generator[train]",
        "srresnet_train",
        "realnvp_step",
        "wgan_gp_critic_step",
        "arcface_step",
        "vae_step",
    ):
        assert model in names
        assert (model[:-1] + "," + AUTOCAST_TAG[1:] if model.endswith("]") else model + AUTOCAST_TAG) in names
