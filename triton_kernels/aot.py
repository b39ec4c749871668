"""Compiles every Triton kernel ahead of time for a real GPU (sm_90 by default) without one:
triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)) produces PTX and a cubin.

    python -m fastgen.triton_kernels.aot [--arch 90]

Must run without TRITON_INTERPRET=1 (interpreted kernels cannot be compiled).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys


def compile_all(arch: int = 90) -> list[tuple[str, int]]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET to compile kernels ahead of time")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastgen.triton_kernels import FAMILIES

    built = []
    for family in FAMILIES:
        module = importlib.import_module(f"fastgen.triton_kernels.{family}")
        for name, kernel, signature, constexprs in module.aot_specs():
            compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                      target=GPUTarget("cuda", arch, 32))
            cubin = compiled.asm["cubin"]
            if not cubin or "ptx" not in compiled.asm:
                raise RuntimeError(f"{name}: no PTX/cubin produced")
            built.append((name, len(cubin)))
    return built


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", type=int, default=90)
    args = parser.parse_args(argv)
    for name, size in compile_all(args.arch):
        print(f"sm_{args.arch} {name}: cubin {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
