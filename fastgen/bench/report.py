"""Benchmark output: a markdown table (stdout), JSON and a PNG chart."""

from __future__ import annotations

import json
import os


def _ms(stats: dict) -> str:
    if "error" in stats:
        return "failed"
    if "median_s" not in stats:  # not run (--no-compile)
        return "-"
    return f"{stats['median_s'] * 1e3:.3f}"


def _mib(stats: dict) -> str:
    return f"{stats['peak_bytes'] / 2**20:.1f}" if "peak_bytes" in stats else "-"


def _ratio(row: dict, key: str) -> str:
    return f"{row[key]:.2f}x" if key in row else "-"


def markdown(rows: list[dict]) -> str:
    head = (
        "| case | shape | dtype | pass | fastgen ms | eager ms | compile ms | vs eager | vs compile "
        "| peak MiB (fg / eager / compile) | fastgen GB/s | roofline |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        imp = r["impls"]
        fg, ea, co = [
            imp.get(n, {"error": r["error"]} if "error" in r else {}) for n in ("fastgen", "eager", "compile")
        ]
        roof = f"{100 * r['roofline_fraction']:.0f}%" if "roofline_fraction" in r else "-"
        gbps = f"{fg['gbps']:.1f}" if "gbps" in fg else "-"
        lines.append(
            f"| {r['case']} | {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['pass']} | {_ms(fg)} | {_ms(ea)} "
            f"| {_ms(co)} | {_ratio(r, 'speedup_vs_eager')} | {_ratio(r, 'speedup_vs_compile')} "
            f"| {_mib(fg)} / {_mib(ea)} / {_mib(co)} | {gbps} | {roof} |"
        )
    for r in rows:
        for name, stats in r.get("baselines", {}).items():
            ratios = ", ".join(f"{n} {v:.2f}x" for n, v in stats["ratios"].items())
            lines.append(
                f"\nbaseline '{name}' for {r['case']} {'x'.join(map(str, r['shape']))} {r['pass']}: "
                f"{stats['median_s'] * 1e3:.3f} ms (same run); time relative to it: {ratios}"
            )
    for r, name, err in failures(rows):
        lines.append(f"\n{name} failed on {r['case']} {'x'.join(map(str, r['shape']))} {r['pass']}: {err}")
    return "\n".join(lines)


def failures(rows: list[dict]) -> list[tuple]:
    """(row, who, error) for every case that could not be built ('case') and every contender that failed."""
    out = [(r, "case", r["error"]) for r in rows if "error" in r]
    return out + [(r, n, s["error"]) for r in rows for n, s in r["impls"].items() if "error" in s]


def write_json(path: str, env: dict, rows: list[dict]) -> None:
    with open(path, "w") as f:
        json.dump({"environment": env, "results": rows}, f, indent=1)


def write_chart(path: str, rows: list[dict]) -> bool:
    """Speedup of fastgen over eager and over torch.compile, one bar pair per row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r['case']}\n{'x'.join(map(str, r['shape']))} {r['pass']}" for r in rows]
    vs_eager = [r.get("speedup_vs_eager", 0.0) for r in rows]
    vs_compile = [r.get("speedup_vs_compile", 0.0) for r in rows]
    width = 0.4
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 4.5))
    xs = range(len(rows))
    ax.bar([x - width / 2 for x in xs], vs_eager, width, label="vs eager PyTorch")
    ax.bar([x + width / 2 for x in xs], vs_compile, width, label="vs torch.compile")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax.set_ylabel("fastgen speedup (x, median)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("fastgen speedup, same process, interleaved timing")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
