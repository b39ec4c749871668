"""fastgen-bench: fastgen vs eager PyTorch vs torch.compile, side by side in one process.

    fastgen-bench                    # --quick: the standard quick shapes of every case
    fastgen-bench --full             # the papers' sizes too
    fastgen-bench --ops reparam_kl --dtype bfloat16 --repeats 31
    fastgen-bench --list
    fastgen-bench --allocator tcmalloc   # re-executes itself with tcmalloc preloaded (also: system, jemalloc)
    fastgen-bench --device cuda --out DIR
Writes bench/results/bench.json, bench/results/bench.md and bench/results/bench.png (or under --out).

--device cuda (the interface `python -m fastgen.gpu_check` uses): the same cases and standard
shapes on the GPU, tensors built on the CPU from the same seeds and moved there; CUDA-event
timing, with a 256 MiB L2 flush before each call of a memory-bound case; a warm-up after the
first (compiling, autotuning, checked) call; peak memory from torch.cuda.max_memory_allocated;
the roofline from a device-to-device copy timed in the same run; fastgen, eager and
torch.compile side by side. Writes DIR/bench.json (environment: device name, capability,
driver, torch / CUDA / Triton versions, copy bandwidth; every result row carries "device",
"timer" and "l2_flush"), DIR/bench.md and DIR/bench.png. Exit status 0 when the run completed
(a case or contender that fails is a result, recorded with its error; `--strict` makes that
status 1), 2 on bad arguments; without a usable CUDA device it exits non-zero at once with a
one-line reason.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="fastgen-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="standard quick shapes (default)")
    size.add_argument("--full", action="store_true", help="the papers' full-size shapes")
    p.add_argument("--ops", default="", help="comma-separated case names or families (default: all)")
    p.add_argument(
        "--exclude",
        default="",
        help="comma-separated substrings: skip the cases whose name contains one, e.g. 'bf16-autocast'",
    )
    p.add_argument("--shapes", default="", help="override shapes, e.g. '4096x512;256x128'")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--repeats", type=int, default=15, help="timed samples per implementation (median reported)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--out", default=os.path.join("bench", "results"), help="directory for bench.json/.md/.png")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: every core this process may use)")
    p.add_argument("--list", action="store_true", help="list the registered cases and exit")
    p.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="where to run: cpu (wall-clock timing) or cuda (CUDA events, L2 flush); see above",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when any case or contender failed (the results are written first)",
    )
    p.add_argument(
        "--allocator",
        choices=allocator_choices(),
        default=None,
        help="run on this malloc: re-executes itself with the library in LD_PRELOAD (found where "
        "torch.backends.xeon.run_cpu looks, then via ldconfig); 'system' is glibc's. Default: "
        "whatever this process runs on. Recorded in every result",
    )
    return p.parse_args(argv)


def allocator_choices():
    from fastgen.bench.allocator import CHOICES

    return CHOICES


def _selected(cases, ops: str):
    if not ops:
        return list(cases.values())
    # Commas inside a case name's brackets (coupling[channel,inverse]) do not separate names.
    wanted = [w.strip() for w in re.split(r",(?![^\[]*\])", ops) if w.strip()]
    chosen = [c for c in cases.values() if c.name in wanted or c.family in wanted or c.name.split("[")[0] in wanted]
    unknown = [w for w in wanted if not any(w in (c.name, c.family, c.name.split("[")[0]) for c in cases.values())]
    if unknown:
        raise SystemExit(f"fastgen-bench: unknown case or family {unknown}; --list shows them")
    return chosen


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse(argv)
    from fastgen.bench import allocator, registry, report, runner

    alloc = allocator.ensure(args.allocator, argv)  # may re-execute this process

    cases = registry.cases()
    if args.list:
        for c in cases.values():
            print(f"{c.name:28s} {c.family:14s} {c.description}")
        return 0
    timer = runner.timing.for_device(args.device)  # a CUDA request without a GPU stops here
    load_start = os.getloadavg()
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    chosen = _selected(cases, args.ops)
    skip = [w.strip() for w in args.exclude.split(",") if w.strip()]
    chosen = [c for c in chosen if not any(w in c.name for w in skip)]
    size = "full" if args.full else "quick"
    impls = ("fastgen", "eager") if args.no_compile else runner.IMPLS
    jobs = []
    for case in chosen:
        shapes = (
            [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(";") if s]
            if args.shapes
            else case.shapes[size]
        )
        jobs += [(case, shape) for shape in shapes]

    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is installed by `make install`
        tqdm = None
    progress = tqdm(jobs, desc="fastgen-bench", unit="case", file=sys.stderr) if tqdm else jobs
    rows = []
    for case, shape in progress:
        if tqdm:
            progress.set_postfix_str(f"{case.name} {'x'.join(map(str, shape))}")
        for row in runner.run_case(case, shape, DTYPES[args.dtype], repeats=args.repeats, impls=impls, timer=timer):
            row["allocator"] = alloc["name"]
            rows.append(row)

    env = runner.environment()
    env.update(timer.environment())
    env["loadavg_start"], env["loadavg_end"] = list(load_start), list(os.getloadavg())
    env["copy_bandwidth_GBps_256MiB"] = runner.timing.copy_bandwidth_gbps(timer=timer)
    env["size"] = size
    table = report.markdown(rows)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    report.write_json(os.path.join(args.out, "bench.json"), env, rows)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(table + "\n")
    chart = os.path.join(args.out, "bench.png")
    wrote = report.write_chart(chart, rows)
    print(
        f"\nwrote {os.path.join(args.out, 'bench.json')}, bench.md" + (", bench.png" if wrote else ""), file=sys.stderr
    )
    failed = report.failures(rows)
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
