"""fastgen-bench: fastgen vs eager PyTorch vs torch.compile, side by side in one process.

    fastgen-bench                    # --quick: the standard quick shapes of every case
    fastgen-bench --full             # the papers' sizes too
    fastgen-bench --ops reparam_kl --dtype bfloat16 --repeats 31
    fastgen-bench --list
Writes bench/results/bench.json, bench/results/bench.md and bench/results/bench.png.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def _parse(argv):
    p = argparse.ArgumentParser(prog="fastgen-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="standard quick shapes (default)")
    size.add_argument("--full", action="store_true", help="the papers' full-size shapes")
    p.add_argument("--ops", default="", help="comma-separated case names or families (default: all)")
    p.add_argument("--shapes", default="", help="override shapes, e.g. '4096x512;256x128'")
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    p.add_argument("--repeats", type=int, default=15, help="timed samples per implementation (median reported)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--out", default=os.path.join("bench", "results"), help="directory for bench.json/.md/.png")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: every core this process may use)")
    p.add_argument("--list", action="store_true", help="list the registered cases and exit")
    return p.parse_args(argv)


def _selected(cases, ops: str):
    if not ops:
        return list(cases.values())
    wanted = [w.strip() for w in ops.split(",") if w.strip()]
    chosen = [c for c in cases.values() if c.name in wanted or c.family in wanted
              or c.name.split("[")[0] in wanted]
    unknown = [w for w in wanted if not any(w in (c.name, c.family, c.name.split("[")[0]) for c in cases.values())]
    if unknown:
        raise SystemExit(f"fastgen-bench: unknown case or family {unknown}; --list shows them")
    return chosen


def main(argv=None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    from fastgen.bench import registry, report, runner

    cases = registry.cases()
    if args.list:
        for c in cases.values():
            print(f"{c.name:28s} {c.family:10s} {c.description}")
        return 0
    threads = args.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    torch.set_num_threads(threads)
    chosen = _selected(cases, args.ops)
    size = "full" if args.full else "quick"
    impls = ("fastgen", "eager") if args.no_compile else runner.IMPLS
    jobs = []
    for case in chosen:
        shapes = ([tuple(int(d) for d in s.split("x")) for s in args.shapes.split(";") if s]
                  if args.shapes else case.shapes[size])
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
        rows += runner.run_case(case, shape, DTYPES[args.dtype], repeats=args.repeats, impls=impls)

    env = runner.environment()
    env["copy_bandwidth_GBps_256MiB"] = runner.timing.copy_bandwidth_gbps()
    env["size"] = size
    table = report.markdown(rows)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    report.write_json(os.path.join(args.out, "bench.json"), env, rows)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(table + "\n")
    chart = os.path.join(args.out, "bench.png")
    wrote = report.write_chart(chart, rows)
    print(f"\nwrote {os.path.join(args.out, 'bench.json')}, bench.md" + (", bench.png" if wrote else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
