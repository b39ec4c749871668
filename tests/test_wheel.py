"""The wheel: `pip wheel --no-build-isolation --no-deps .` (as `make wheel` runs it), installed
into a fresh venv away from the source tree, imports, ships its Triton kernels, runs
`fastgen-bench --list` and passes the per-family smoke test (tests/cpu_capability_cases.py)."""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys
import zipfile

import pytest

import fastgen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(command, cwd, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTGEN_FORCE_JIT")}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    _check(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(out), ROOT],
        cwd=ROOT,
    )
    (path,) = glob.glob(str(out / "fastgen-*.whl"))
    return path


@pytest.mark.slow
def test_wheel_contents_and_metadata(wheel):
    assert os.path.basename(wheel).startswith(f"fastgen-{fastgen.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = z.read(metadata).decode()
        (library,) = [n for n in names if n.startswith("fastgen/_C") and n.endswith(".so")]
        size = z.getinfo(library).file_size
    assert "fastgen/triton_kernels/reparam_kl.py" in names and "fastgen/triton_kernels/aot.py" in names
    # Exactly the tree's modules: none missing, and none the tree no longer has (setuptools'
    # build/lib keeps deleted files unless setup.py empties it).
    tree = {
        os.path.join(prefix, os.path.relpath(os.path.join(d, f), os.path.join(ROOT, src)))
        for src, prefix in (("fastgen", "fastgen"), ("triton_kernels", "fastgen/triton_kernels"))
        for d, _, files in os.walk(os.path.join(ROOT, src))
        for f in files
        if f.endswith(".py")
    }
    assert {n for n in names if n.endswith(".py")} == tree
    assert size < 20 * 2**20, f"{library} is {size / 2**20:.1f} MiB: built with debug info?"
    assert "Requires-Dist: torch==2.13.0" in meta
    assert "Provides-Extra: cuda" in meta and 'Requires-Dist: triton==3.9.0; extra == "cuda"' in meta
    assert f"Version: {fastgen.__version__}" in meta


@pytest.mark.slow
def test_wheel_installs_and_works_away_from_the_source_tree(wheel, tmp_path):
    venv = tmp_path / "venv"
    _check([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = str(venv / "bin" / "python")
    # torch (and Triton) come from this environment rather than a second multi-GB install: a .pth
    # file appends its site-packages. Paths a .pth adds do not run their own .pth files, so the
    # editable install of the source tree stays invisible.
    purelib = _check([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).strip()
    with open(os.path.join(purelib, "zz_torch_from_build_env.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    _check([python, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check", wheel], cwd=tmp_path)

    where = _check(
        [
            python,
            "-c",
            "import fastgen, fastgen.triton_kernels.reparam_kl as k; "
            "print(fastgen.__file__); print(fastgen.build_info()['extension'])",
        ],
        cwd=tmp_path,
    ).split()
    assert where[0].startswith(str(venv)), f"imported {where[0]}, not the installed wheel"
    assert where[1] == "prebuilt"
    listing = _check([str(venv / "bin" / "fastgen-bench"), "--list"], cwd=tmp_path)
    assert "instance_norm" in listing

    no_triton = subprocess.run(
        [
            python,
            "-c",
            "import sys; sys.modules['triton'] = None; import fastgen, torch; "
            "fastgen.functional.pixel_norm(torch.ones(2, 3)); import fastgen.triton_kernels.coupling",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert no_triton.returncode == 1 and "pip install 'fastgen[cuda]'" in no_triton.stderr, no_triton.stderr[-2000:]

    smoke = tmp_path / "smoke" / "tests"
    smoke.mkdir(parents=True)
    for name in ("__init__.py", "_tolerance.py", "cpu_capability_cases.py"):
        shutil.copy(os.path.join(ROOT, "tests", name), smoke / name)
    out = _check(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cpu_capability_cases.py"], cwd=smoke.parent
    )
    assert " passed" in out and " failed" not in out
