"""The one place that knows fastgen's C++ sources, compiler flags and how they are built.

fastgen._C holds every CPU kernel three times, once per CPU capability (DEFAULT, AVX2,
AVX512 on x86-64; DEFAULT alone elsewhere), as ATen's DispatchStub does: the same source is
compiled with each capability's flags into its own namespace (`fastgen::AVX512::...`), and
csrc/cpu_dispatch.cpp registers the one variant that matches torch's own
(`torch.backends.cpu.get_cpu_capability()`) when fastgen is imported. A wheel or a venv built on
one machine therefore runs on any x86-64 CPU.

setuptools cannot compile one source several times with different flags, so the objects and
the shared library are built by a ninja file written here (incremental: only what changed is
recompiled). setup.py (ahead of time) and fastgen/_ext.py (JIT fallback) both call
`build_library`, so the two builds are identical. Keep this module free of heavy imports at
module level: setup.py loads it by path before fastgen is importable.

Release builds carry no debug information (the library is ~1/15 the size); set
FASTGEN_BUILD=debug for `-O0 -g`.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import sysconfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
EXTENSION_NAME = "fastgen._C"

# Translation units compiled once: the op schemas, the capability dispatch and the C++
# autograd live at the dispatcher's level and contain no vectorized code.
_ONCE = ("registration.cpp", "cpu_dispatch.cpp", "autocast.cpp")

# Capability -> flags that make at::vec::Vectorized use that instruction set. -march=native is
# never used: the build host's ISA says nothing about the machine that runs the library.
_CAPABILITY_FLAGS = {
    "DEFAULT": [],
    # -mf16c: ATen's scalar Half <-> float conversions use F16C intrinsics in AVX2 builds.
    "AVX2": ["-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma", "-mf16c"],
    "AVX512": ["-DCPU_CAPABILITY_AVX512", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mfma"],
}


def capabilities() -> list[str]:
    """The variants this platform builds, DEFAULT first (see link order in _ninja_file)."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        return ["DEFAULT", "AVX2", "AVX512"]
    return ["DEFAULT"]


def kernel_sources() -> list[str]:
    """csrc/<family>.cpp: the CPU kernels, compiled once per capability."""
    return sorted(p for p in glob.glob(os.path.join(CSRC, "*.cpp")) if os.path.basename(p) not in _ONCE)


def dispatch_sources() -> list[str]:
    """Compiled once: schemas, capability dispatch, C++ autograd (csrc/autograd/)."""
    once = [os.path.join(CSRC, name) for name in _ONCE]
    return once + sorted(glob.glob(os.path.join(CSRC, "autograd", "*.cpp")))


def sources() -> list[str]:
    """Every C++ source of fastgen._C."""
    return dispatch_sources() + kernel_sources()


def headers() -> list[str]:
    return sorted(glob.glob(os.path.join(CSRC, "**", "*.h"), recursive=True))


def debug_build() -> bool:
    return os.environ.get("FASTGEN_BUILD", "release").lower() == "debug"


def _torch_flags() -> tuple[list[str], list[str]]:
    import torch
    from torch.utils import cpp_extension

    includes = [*cpp_extension.include_paths(), sysconfig.get_paths()["include"], CSRC]
    cflags = [f"-I{d}" for d in includes] + [
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        "-DTORCH_EXTENSION_NAME=_C",
    ]
    lib_dirs = cpp_extension.library_paths()
    ldflags = [f"-L{d}" for d in lib_dirs] + ["-lc10", "-ltorch", "-ltorch_cpu", "-ltorch_python"]
    return cflags, ldflags


def cxx_flags(capability: str = "DEFAULT") -> list[str]:
    optimize = ["-O0", "-g"] if debug_build() else ["-O3", "-g0"]
    return [
        "-std=c++20",
        "-fPIC",
        *optimize,
        "-fopenmp",  # without it at::parallel_for runs on one thread
        "-fvisibility=hidden",
        # Round every product as written: GCC would otherwise fuse a * b - c into one FMA where
        # the code does not ask for it, and a value recomputed in backward would then differ from
        # the forward's rounded one (at::vec::fmadd still gives an FMA where one is wanted).
        "-ffp-contract=off",
        "-Wno-unknown-pragmas",  # ATen headers carry clang and CUDA pragmas
        f"-DCPU_CAPABILITY={capability}",
        *_CAPABILITY_FLAGS[capability],
    ]


def link_flags() -> list[str]:
    return ["-shared", "-fopenmp"] + ([] if debug_build() else ["-s"])


def _object_name(source: str, capability: str | None) -> str:
    rel = os.path.relpath(source, CSRC).replace(os.sep, "_")
    return f"obj/{rel}.{capability or 'ONCE'}.o"


def _ninja_file(output: str) -> str:
    compiler = os.environ.get("CXX", "c++")
    torch_cflags, torch_ldflags = _torch_flags()
    q = lambda items: " ".join(shlex.quote(i) for i in items)  # noqa: E731
    lines = [
        "ninja_required_version = 1.3",
        f"cxx = {compiler}",
        f"torch_cflags = {q(torch_cflags)}",
        "rule compile",
        "  command = $cxx -MMD -MF $out.d $torch_cflags $cflags -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = CXX $out",
        "rule link",
        "  command = $cxx $in -o $out $ldflags",
        "  description = LINK $out",
    ]
    # Link order matters: inline functions and templates that several variants instantiate
    # (std::, c10::) are merged by the linker, which keeps the first copy it sees. The
    # capability-independent and DEFAULT objects come first, so the copy every variant shares
    # is the one any CPU can run; each variant's own vector code lives in its own namespace.
    # The autograd sources share a precompiled header of the torch headers they all parse
    # (csrc/autograd/precompiled.h): GCC uses pch/<name>.gch for `-include pch/<name>` when it
    # was built with the same flags, and parses the header itself otherwise.
    once_flags = cxx_flags("DEFAULT")
    pch_header = os.path.join(CSRC, "autograd", "precompiled.h")
    lines += [
        "rule copy",
        "  command = cp $in $out",
        "rule pch",
        "  command = $cxx -MMD -MF $out.d $torch_cflags $cflags -x c++-header -c $in -o $out",
        "  depfile = $out.d",
        "  deps = gcc",
        "  description = PCH $out",
        f"build pch/precompiled.h: copy {pch_header}",
        f"build pch/precompiled.h.gch: pch {pch_header}",
        f"  cflags = {q(once_flags)}",
    ]
    objects = []
    for source in dispatch_sources():
        obj = _object_name(source, None)
        if os.path.dirname(source).endswith("autograd"):
            lines += [
                f"build {obj}: compile {source} || pch/precompiled.h pch/precompiled.h.gch",
                f"  cflags = {q(['-include', 'pch/precompiled.h', '-Winvalid-pch', *once_flags])}",
            ]
        else:
            lines += [f"build {obj}: compile {source}", f"  cflags = {q(once_flags)}"]
        objects.append(obj)
    for capability in capabilities():
        for source in kernel_sources():
            obj = _object_name(source, capability)
            lines += [f"build {obj}: compile {source}", f"  cflags = {q(cxx_flags(capability))}"]
            objects.append(obj)
    lines += [
        f"build {output}: link {' '.join(objects)}",
        f"  ldflags = {q(link_flags() + torch_ldflags)}",
        f"default {output}",
    ]
    return "\n".join(lines) + "\n"


def library_filename() -> str:
    return "_C" + sysconfig.get_config_var("EXT_SUFFIX")


def build_dir() -> str:
    """A persistent build folder per configuration (torch, Python, compiler, debug or not)."""
    import torch

    key = f"{torch.__version__}|{sys.version}|{os.environ.get('CXX', 'c++')}|{debug_build()}"
    return os.path.join(ROOT, "build", "fastgen-" + hashlib.sha1(key.encode()).hexdigest()[:12])


def build_library(directory: str | None = None, verbose: bool = False) -> str:
    """Compiles (incrementally) and links fastgen._C with ninja; returns the library's path."""
    directory = directory or build_dir()
    os.makedirs(directory, exist_ok=True)
    # One build at a time per folder (parallel test processes, `pip wheel` beside `pip install`).
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(directory, verbose)


def _build_locked(directory: str, verbose: bool) -> str:
    output = library_filename()
    ninja_path = os.path.join(directory, "build.ninja")
    content = _ninja_file(output)
    old = open(ninja_path).read() if os.path.exists(ninja_path) else None
    if content != old:
        with open(ninja_path, "w") as f:
            f.write(content)
    jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
    command = [_ninja(), "-C", directory, "-j", jobs] + (["-v"] if verbose else [])
    done = subprocess.run(command, capture_output=not verbose, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building fastgen._C failed:\n{(done.stdout or '')[-20000:]}{done.stderr or ''}")
    return os.path.join(directory, output)


def _ninja() -> str:
    try:
        import ninja  # the PyPI package ships the binary

        return os.path.join(ninja.BIN_DIR, "ninja")
    except ImportError:
        return "ninja"
