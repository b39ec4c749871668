"""`fastgen-bench --allocator system|tcmalloc|jemalloc`: run the benchmark under a chosen malloc.

A malloc replacement has to be in place before the process starts, so the runner re-executes
itself (`python -m fastgen.bench <same arguments>`) with the library in LD_PRELOAD. The library
is looked for first where PyTorch's own launcher (`python -m torch.backends.xeon.run_cpu`) looks
(its `_Launcher.add_lib_preload`: $CONDA_PREFIX/lib, $VIRTUAL_ENV/lib, ~/.local/lib,
/usr/local/lib{,64}, /usr/lib{,64}, for `lib<name>.so`), then in the dynamic linker's cache
(`ldconfig -p`), which is where Debian and Ubuntu put the versioned libraries the runtime
packages install (/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4, libjemalloc.so.2; the
unversioned `.so` that run_cpu wants comes only with the -dev packages).

Why it matters: glibc malloc returns every block of 32 MiB or more to the kernel on free, so a
kernel that allocates its output pays the first-touch page faults of fresh memory on every call
(about 12 ms per 32 MiB on these VMs), for eager and fastgen alike. A caching allocator shows the
kernels themselves; the README reports both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

# Set in the re-executed child so that it checks the preload took instead of re-executing again.
_REEXEC_MARK = "FASTGEN_BENCH_ALLOCATOR"

# jemalloc's settings for the benchmark (measured: docs/bench-allocators.md). With jemalloc's
# defaults, and with run_cpu's "oversize_threshold:1,background_thread:true,metadata_thp:auto",
# every 32 MiB tensor is page-faulted afresh on each call (as many faults as under glibc: 16386
# per instance-norm fwd+bwd at 8x256x64x64). Disabling the decay-based purging keeps freed pages
# mapped (0 faults, as tcmalloc); `oversize_threshold:0` alone does not. The cost: the process
# keeps its peak footprint, which is what a benchmark loop (and a training loop) reuses anyway.
JEMALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


@dataclass(frozen=True)
class Allocator:
    name: str
    lib_types: tuple  # names run_cpu's add_lib_preload searches for (lib<type>.so)
    sonames: tuple  # name prefixes in the dynamic linker's cache (versioned runtime libraries)
    package: str  # the Debian / Ubuntu package that installs it
    env: dict  # settings exported with the preload (a value already in the environment wins)


ALLOCATORS = {
    "tcmalloc": Allocator(
        "tcmalloc",
        ("tcmalloc", "tcmalloc_minimal"),
        ("libtcmalloc_minimal.so", "libtcmalloc.so"),
        "libtcmalloc-minimal4",
        # tcmalloc prints a warning for every allocation above 1 GiB by default.
        {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)},
    ),
    "jemalloc": Allocator(
        "jemalloc", ("jemalloc",), ("libjemalloc.so",), "libjemalloc2", {"MALLOC_CONF": JEMALLOC_CONF}
    ),
}
CHOICES = ("system", *ALLOCATORS)
# Libraries that replace malloc: anything of these in LD_PRELOAD is dropped for another choice.
_MALLOC_LIB = re.compile(r"lib(tcmalloc|jemalloc)[^/]*\.so")


def _run_cpu_search(lib_type: str) -> str | None:
    """The library path PyTorch's launcher would preload for lib_type, or None. Its
    add_lib_preload prepends what it finds to os.environ["LD_PRELOAD"]; we run it on an empty
    LD_PRELOAD and read the result back, leaving the environment as it was."""
    try:
        from torch.backends.xeon.run_cpu import _Launcher
    except ImportError:  # pragma: no cover - every torch we support has it
        return None
    saved = os.environ.get("LD_PRELOAD")
    os.environ["LD_PRELOAD"] = ""
    try:
        # _Launcher() would run lscpu for its NUMA map; add_lib_preload does not use it.
        found = _Launcher.__new__(_Launcher).add_lib_preload(lib_type=lib_type)
        path = os.environ.get("LD_PRELOAD", "").split(os.pathsep)[0] if found else ""
    finally:
        if saved is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = saved
    return path or None


def _ldconfig_search(sonames: tuple) -> str | None:
    """The first library in the dynamic linker's cache whose name starts with one of sonames."""
    for exe in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            out = subprocess.run([exe, "-p"], capture_output=True, text=True, check=False).stdout
            break
        except OSError:
            continue
    else:
        return None
    entries = re.findall(r"^\s*(\S+) \(([^)]*)\) => (\S+)$", out, re.MULTILINE)
    wide = sys.maxsize > 2**32  # a 64-bit interpreter preloads only the 64-bit library
    for prefix in sonames:
        for name, flags, path in entries:
            if name.startswith(prefix) and "debug" not in name and ("64" in flags) == wide and os.path.exists(path):
                return path
    return None


def find_library(name: str) -> str | None:
    """Path of the allocator library `name`, or None when it is not installed."""
    alloc = ALLOCATORS[name]
    for lib_type in alloc.lib_types:
        path = _run_cpu_search(lib_type)
        if path:
            return path
    return _ldconfig_search(alloc.sonames)


def missing_message(name: str) -> str:
    alloc = ALLOCATORS[name]
    return (
        f"fastgen-bench: --allocator {name}: no {name} library found (looked where "
        f"torch.backends.xeon.run_cpu looks, for lib{alloc.lib_types[0]}.so, and in `ldconfig -p`); "
        f"install it with `apt-get install {alloc.package}` (Debian/Ubuntu; `make bench-deps` does it), "
        f"or put its directory in $VIRTUAL_ENV/lib or /usr/local/lib"
    )


def loaded_allocator(maps_path: str = "/proc/self/maps") -> dict:
    """Which malloc this process runs on: {'name': 'system' | 'tcmalloc' | 'jemalloc', 'library': path}."""
    try:
        with open(maps_path) as f:
            maps = f.read()
    except OSError:
        return {"name": "unknown", "library": None}
    for name in ALLOCATORS:
        m = re.search(rf"(\S*lib{name}[^/\s]*\.so[^/\s]*)$", maps, re.MULTILINE)
        if m:
            return {"name": name, "library": m.group(1)}
    return {"name": "system", "library": None}


def describe() -> dict:
    """The allocator in effect, for the results: name, library, and the settings that shape it."""
    info = loaded_allocator()
    if info["name"] == "system":
        info["settings"] = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
        info["description"] = "glibc malloc" + (
            " with " + ", ".join(f"{k}={v}" for k, v in info["settings"].items())
            if info["settings"]
            else ", default settings (mmap threshold 32 MiB max)"
        )
    elif info["name"] in ALLOCATORS:
        keys = ALLOCATORS[info["name"]].env
        info["settings"] = {k: os.environ[k] for k in keys if k in os.environ}
        info["description"] = info["name"] + "".join(f" {k}={v}" for k, v in info["settings"].items())
    return info


def child_environment(name: str, environ: dict, library: str | None) -> dict:
    """The environment to re-execute with for allocator `name` (library: its path, None for
    'system'): other malloc libraries removed from LD_PRELOAD, this one put first."""
    env = dict(environ)
    kept = [p for p in env.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p and not _MALLOC_LIB.search(p)]
    if library:
        kept.insert(0, library)
        for key, value in ALLOCATORS[name].env.items():
            env.setdefault(key, value)
    if kept:
        env["LD_PRELOAD"] = ":".join(kept)
    else:
        env.pop("LD_PRELOAD", None)
    env[_REEXEC_MARK] = name
    return env


def ensure(
    name: str | None, argv: list, *, execve=os.execve, find=find_library, loaded=loaded_allocator, environ=None
) -> dict:
    """Make this process run on allocator `name` (None: whatever it runs on). Re-executes
    `python -m fastgen.bench argv` with the library preloaded when it is not already; returns
    describe() once it is. A missing library, or a preload that did not take, is a SystemExit
    with the reason."""
    environ = os.environ if environ is None else environ
    if name is None:
        return describe()
    if name not in CHOICES:
        raise SystemExit(f"fastgen-bench: --allocator must be one of {', '.join(CHOICES)}, got {name!r}")
    current = loaded()
    if current["name"] == name:
        return describe()
    if environ.get(_REEXEC_MARK) == name:
        raise SystemExit(
            f"fastgen-bench: --allocator {name}: re-executed with LD_PRELOAD="
            f"{environ.get('LD_PRELOAD', '')!r} but this process runs on {current['name']} "
            f"({current['library'] or 'no preloaded malloc'})"
        )
    library = None
    if name != "system":
        library = find(name)
        if not library:
            raise SystemExit(missing_message(name))
    env = child_environment(name, environ, library)
    sys.stdout.flush()
    sys.stderr.flush()
    execve(sys.executable, [sys.executable, "-m", "fastgen.bench", *argv], env)
    raise SystemExit("fastgen-bench: re-execution returned")  # only a fake execve gets here
