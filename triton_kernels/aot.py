"""Compiles every Triton kernel ahead of time for real GPUs without one, and reports what each
compiled kernel needs from the chip.

    python -m fastgen.triton_kernels.aot                    # compile for sm_80 and sm_90
    python -m fastgen.triton_kernels.aot --report           # + a resource table per kernel and config
    python -m fastgen.triton_kernels.aot --arch 90 --json out.json

triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)) produces PTX and a cubin
without a GPU. Every specialization the launchers use (each module's aot_specs(): dtypes,
constexpr variants, and every autotune config a kernel can pick) is compiled for every arch.
The resources come from the compiled code itself: registers per thread, stack and local
memory from the cubin (`cuobjdump -res-usage`), spill stores/loads from `ptxas -v` on the
same PTX with the flags Triton uses, shared memory from the cubin plus Triton's dynamic
shared memory, and the theoretical occupancy those imply on each arch.

Must run without TRITON_INTERPRET=1 (interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

ARCHS = (80, 90)

# Per-SM limits of the arch (CUDA C Programming Guide, "Compute capabilities" table):
# 8.0 = A100, 9.0 = H100. Shared memory per block is the opt-in maximum; the runtime reserves
# 1 KiB of shared memory per resident block on both.
LIMITS = {
    80: dict(
        name="A100",
        max_warps=64,
        max_blocks=32,
        regs=65536,
        reg_unit=256,
        max_regs_thread=255,
        smem_sm=167936,
        smem_block=166912,
        smem_reserved=1024,
    ),
    90: dict(
        name="H100",
        max_warps=64,
        max_blocks=32,
        regs=65536,
        reg_unit=256,
        max_regs_thread=255,
        smem_sm=233472,
        smem_block=232448,
        smem_reserved=1024,
    ),
}


@dataclass
class Resources:
    family: str
    kernel: str  # the spec name: kernel[dtype,variant,...]
    arch: int
    num_warps: int
    num_stages: int
    registers: int  # per thread
    spill_stores: int  # bytes
    spill_loads: int  # bytes
    stack: int  # bytes per thread
    local: int  # bytes per thread
    shared: int  # bytes per block (static + Triton's dynamic)
    occupancy: float  # resident warps / max warps per SM
    limited_by: str
    cubin_bytes: int
    calls: int  # CALL instructions in the SASS (ptxas's IEEE div/sqrt slow paths are subroutines)


def specs():
    """(family, name, kernel, signature, constexprs, options) for every specialization."""
    from fastgen.triton_kernels import FAMILIES

    out = []
    for family in FAMILIES:
        module = importlib.import_module(f"fastgen.triton_kernels.{family}")
        for spec in module.aot_specs():
            name, kernel, signature, constexprs = spec[:4]
            options = dict(spec[4]) if len(spec) > 4 else {}
            out.append((family, name, jit_function(kernel), signature, constexprs, options))
    return out


def jit_function(kernel):
    """The @triton.jit function under an @triton.autotune / @triton.heuristics wrapper."""
    from triton.runtime.jit import JITFunction

    while not isinstance(kernel, JITFunction):
        kernel = kernel.fn
    return kernel


def _tool(name: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def occupancy(arch: int, num_warps: int, registers: int, shared: int) -> tuple[float, str]:
    """Theoretical occupancy (resident warps / max warps per SM) and the limiting resource."""
    lim = LIMITS[arch]
    regs_per_warp = -(-registers * 32 // lim["reg_unit"]) * lim["reg_unit"]
    by = {
        "warps": lim["max_warps"] // num_warps,
        "blocks": lim["max_blocks"],
        "registers": (lim["regs"] // regs_per_warp) // num_warps if regs_per_warp else lim["max_blocks"],
        "shared": lim["smem_sm"] // (shared + lim["smem_reserved"]),
    }
    limit = min(by, key=lambda k: (by[k], k != "warps"))
    return by[limit] * num_warps / lim["max_warps"], limit


def _res_usage(cubin: bytes) -> dict:
    """Registers, stack, static shared and local memory from `cuobjdump -res-usage`, and the
    number of CALL instructions from `cuobjdump -sass`."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        text = subprocess.run(
            [_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", f.name], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", text)
    if not m:
        raise RuntimeError(f"cuobjdump -res-usage printed no resource line:\n{text}")
    usage = dict(zip(("registers", "stack", "shared", "local"), map(int, m.groups())))
    usage["calls"] = len(re.findall(r"\bCALL\.", sass))
    return usage


def _spills(ptx: str, arch: int, fp_fusion: bool) -> tuple[int, int, int]:
    """(spill store bytes, spill load bytes, registers) from ptxas -v on the kernel's PTX, with
    the flags Triton's make_cubin passes."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [
            get_ptxas(arch).path,
            "-lineinfo",
            *([] if fp_fusion else ["--fmad=false"]),
            "-v",
            "--regAllocOptLevel=2",
            f"--gpu-name={sm_arch_from_capability(arch)}",
            src,
            "-o",
            os.path.join(d, "k.o"),
        ]
        log = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    r = re.search(r"Used (\d+) registers", log)
    if not (m and r):
        raise RuntimeError(f"ptxas -v printed no spill/register line:\n{log}")
    return int(m.group(1)), int(m.group(2)), int(r.group(1))


def compile_spec(spec, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    family, name, kernel, signature, constexprs, options = spec
    return triton.compile(
        ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
        target=GPUTarget("cuda", arch, 32),
        options=options or None,
    )


def resources(spec, compiled, arch: int) -> Resources:
    family, name = spec[0], spec[1]
    cubin = compiled.asm.get("cubin")
    if not cubin or "ptx" not in compiled.asm:
        raise RuntimeError(f"{name}: no PTX/cubin produced for sm_{arch}")
    md = compiled.metadata
    usage = _res_usage(cubin)
    stores, loads, regs = _spills(compiled.asm["ptx"], arch, md.enable_fp_fusion)
    if regs != usage["registers"]:
        raise RuntimeError(f"{name}: ptxas -v says {regs} registers, the cubin {usage['registers']}")
    shared = usage["shared"] + md.shared
    occ, limit = occupancy(arch, md.num_warps, usage["registers"], shared)
    return Resources(
        family=family,
        kernel=name,
        arch=arch,
        num_warps=md.num_warps,
        num_stages=md.num_stages,
        registers=usage["registers"],
        spill_stores=stores,
        spill_loads=loads,
        stack=usage["stack"],
        local=usage["local"],
        shared=shared,
        occupancy=occ,
        limited_by=limit,
        cubin_bytes=len(cubin),
        calls=usage["calls"],
    )


def compile_all(archs=ARCHS, report: bool = False, only: str = ""):
    """Compiles every spec (whose name contains `only`) for every arch: a list of (arch, name,
    cubin bytes), or of Resources when report is set."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET to compile kernels ahead of time")
    out = []
    for spec in specs():
        if only not in f"{spec[0]}.{spec[1]}":
            continue
        for arch in archs:
            compiled = compile_spec(spec, arch)
            if report:
                out.append(resources(spec, compiled, arch))
            else:
                cubin = compiled.asm.get("cubin")
                if not cubin or "ptx" not in compiled.asm:
                    raise RuntimeError(f"{spec[1]}: no PTX/cubin produced for sm_{arch}")
                out.append((arch, spec[1], len(cubin)))
    return out


def summary(rows: list[Resources]) -> list[dict]:
    """Worst case per Triton kernel and arch over its specializations (dtypes, variants, configs)."""
    out: dict = {}
    for r in rows:
        key = (r.family, r.kernel.split("[")[0], r.arch)
        s = out.setdefault(
            key,
            dict(
                family=r.family,
                kernel=key[1],
                arch=r.arch,
                specs=0,
                max_registers=0,
                spill_bytes=0,
                max_shared=0,
                min_occupancy=1.0,
                warps=set(),
            ),
        )
        s["specs"] += 1
        s["max_registers"] = max(s["max_registers"], r.registers)
        s["spill_bytes"] += r.spill_stores + r.spill_loads
        s["max_shared"] = max(s["max_shared"], r.shared)
        s["min_occupancy"] = min(s["min_occupancy"], r.occupancy)
        s["warps"].add(r.num_warps)
    return [dict(v, warps=",".join(map(str, sorted(v["warps"])))) for v in out.values()]


def format_table(rows: list[Resources]) -> str:
    head = (
        "| kernel | arch | warps | stages | regs/thread | spill st/ld (B) | stack (B) | shared (B) "
        "| occupancy | limited by |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r.kernel} | sm_{r.arch} | {r.num_warps} | {r.num_stages} | {r.registers} "
            f"| {r.spill_stores}/{r.spill_loads} | {r.stack} | {r.shared} | {r.occupancy:.0%} "
            f"| {r.limited_by} |"
        )
    return "\n".join(lines)


def format_summary(rows: list[Resources]) -> str:
    by_kernel: dict = {}
    for s in summary(rows):
        by_kernel.setdefault((s["family"], s["kernel"]), {})[s["arch"]] = s
    archs = sorted({r.arch for r in rows})
    head = (
        "| kernel | specs | warps | "
        + " | ".join(f"sm_{a} max regs | sm_{a} max shared (B) | sm_{a} min occupancy" for a in archs)
        + " | spills |"
    )
    lines = [head, "|" + "---|" * (4 + 3 * len(archs))]
    for (family, kernel), per_arch in by_kernel.items():
        first = per_arch[archs[0]]
        cells = " | ".join(
            f"{per_arch[a]['max_registers']} | {per_arch[a]['max_shared']} | {per_arch[a]['min_occupancy']:.0%}"
            for a in archs
        )
        spills = sum(per_arch[a]["spill_bytes"] for a in archs)
        lines.append(
            f"| {family}.{kernel} | {first['specs']} | {first['warps']} | {cells} | "
            f"{'none' if spills == 0 else f'{spills} B'} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--arch",
        type=int,
        action="append",
        choices=sorted(LIMITS),
        help="compute capability x10 (repeatable; default: 80 and 90)",
    )
    parser.add_argument("--report", action="store_true", help="print the resource table (and a per-kernel summary)")
    parser.add_argument("--summary", action="store_true", help="print only the per-kernel worst-case summary")
    parser.add_argument("--only", default="", help="compile only the specs whose family.name contains this")
    parser.add_argument("--json", help="write every row's resources to this JSON file")
    args = parser.parse_args(argv)
    archs = tuple(args.arch or ARCHS)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is unset
    want_resources = args.report or args.summary or args.json
    rows = compile_all(archs, report=bool(want_resources), only=args.only)
    if not want_resources:
        for arch, name, size in rows:
            print(f"sm_{arch} {name}: cubin {size} bytes")
        return 0
    for r in rows:
        print(f"sm_{r.arch} {r.kernel}: cubin {r.cubin_bytes} bytes")
    if args.report:
        print()
        print(format_table(rows))
    if args.report or args.summary:
        print()
        print(format_summary(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"limits": LIMITS, "rows": [asdict(r) for r in rows], "summary": summary(rows)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
