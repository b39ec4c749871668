"""Side-by-side table of fastgen-bench runs (e.g. the same suite under two allocators).

    python -m fastgen.bench.compare tcmalloc/bench.json system/bench.json [--pass fwd+bwd] [--memory-bound]

Each run is labelled with the allocator its JSON records. Per case, shape and pass: the median
milliseconds of fastgen, eager and torch.compile in every run, fastgen's speedup over eager, and
fastgen's fraction of the copy roofline measured in that run (from the medians, and in brackets
from the best samples: the uncontended estimate on a busy machine), and page faults per call.
"""

from __future__ import annotations

import argparse
import json


def _load(path: str) -> tuple[str, dict, list]:
    with open(path) as f:
        data = json.load(f)
    env = data["environment"]
    alloc = env.get("allocator")
    label = alloc.get("name", "?") if isinstance(alloc, dict) else str(alloc)
    return label, env, data["results"]


def _key(row: dict) -> tuple:
    return row["case"], tuple(row["shape"]), row["pass"]


def _ms(row: dict | None, impl: str) -> str:
    stats = (row or {}).get("impls", {}).get(impl, {})
    if "error" in stats or (row and "error" in row):
        return "failed"
    return f"{stats['median_s'] * 1e3:.3f}" if "median_s" in stats else "-"


def _faults(row: dict | None) -> str:
    impls = (row or {}).get("impls", {})
    counts = [impls.get(n, {}).get("page_faults_per_call") for n in ("fastgen", "eager")]
    return " / ".join("-" if c is None else f"{c:.0f}" for c in counts)


def table(runs: list[tuple[str, dict, list]], passes=("fwd", "fwd+bwd"), memory_bound_only: bool = False) -> str:
    labels = [label for label, _, _ in runs]
    by_key = [{_key(r): r for r in rows} for _, _, rows in runs]
    order = []
    for _, _, rows in runs:
        for r in rows:
            if _key(r) not in order and r["pass"] in passes and (r.get("memory_bound", True) or not memory_bound_only):
                order.append(_key(r))
    slash = " / ".join(labels)
    head = (
        f"| case | shape | pass | fastgen ms ({slash}) | eager ms ({slash}) | compile ms ({slash}) "
        f"| fastgen vs eager ({slash}) | roofline ({slash}) | page faults per call, fastgen / eager ({slash}) |"
    )
    lines = [head, "|" + "---|" * 9]
    for key in order:
        rows = [k.get(key) for k in by_key]
        speed = [f"{r['speedup_vs_eager']:.2f}x" if r and "speedup_vs_eager" in r else "-" for r in rows]
        roof = [
            (
                f"{100 * r['roofline_fraction']:.0f}%"
                + (f" (best {100 * r['roofline_fraction_best']:.0f}%)" if "roofline_fraction_best" in r else "")
            )
            if r and "roofline_fraction" in r and r.get("memory_bound", True)
            else "-"
            for r in rows
        ]
        lines.append(
            f"| {key[0]} | {'x'.join(map(str, key[1]))} | {key[2]} "
            f"| {' / '.join(_ms(r, 'fastgen') for r in rows)} | {' / '.join(_ms(r, 'eager') for r in rows)} "
            f"| {' / '.join(_ms(r, 'compile') for r in rows)} | {' / '.join(speed)} | {' / '.join(roof)} "
            f"| {' ; '.join(_faults(r) for r in rows)} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fastgen.bench.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", help="bench.json files")
    p.add_argument("--pass", dest="passes", default="fwd,fwd+bwd", help="passes to show (comma-separated)")
    p.add_argument("--memory-bound", action="store_true", help="only the memory-bound cases")
    args = p.parse_args(argv)
    runs = [_load(path) for path in args.runs]
    for label, env, _ in runs:
        print(
            f"- {label}: {env.get('allocator', {}).get('description', '')}; copy bandwidth "
            f"{env.get('copy_bandwidth_GBps_256MiB', 0):.1f} GB/s; load average "
            f"{env.get('loadavg_start', '?')} -> {env.get('loadavg_end', '?')}; {env.get('date', '')}"
        )
    print()
    print(table(runs, tuple(args.passes.split(",")), args.memory_bound))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
