"""Build and import: what fastgen.build_info() reports, import without Triton or a GPU,
and the JIT fallback that compiles the same sources when fastgen._C is missing."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import fastgen


def _python(code: str, **env_overrides) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_overrides)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=900
    )


def test_build_info_reports_the_build():
    info = fastgen.build_info()
    assert info["fastgen"] == fastgen.__version__
    assert info["torch"] == torch.__version__
    assert info["cpu_capability"] in ("AVX512", "AVX2", "DEFAULT")
    # The capability macros really took effect: AVX512 means 16 floats per vector.
    expected_width = {"AVX512": 16, "AVX2": 8}.get(info["cpu_capability"])
    if expected_width:
        assert info["float_vector_width"] == expected_width
    assert info["openmp"] is True, "built without -fopenmp: at::parallel_for would run on one thread"
    assert info["num_threads"] == torch.get_num_threads()
    assert info["cuda"] == torch.cuda.is_available()
    assert isinstance(info["triton_kernels_usable"], bool)


def test_import_does_not_touch_triton():
    done = _python("""
        import sys, fastgen, torch
        z, kl = fastgen.functional.reparameterize_kl(torch.zeros(2, 3), torch.zeros(2, 3))
        assert "triton" not in sys.modules, "importing or using fastgen on CPU imported triton"
        print("ok")
    """)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_import_works_without_triton_installed():
    done = _python("""
        import sys
        sys.modules["triton"] = None  # what a machine without triton looks like to import
        import fastgen, torch
        info = fastgen.build_info()
        assert info["triton"] is None and info["triton_kernels_usable"] is False, info
        fastgen.functional.kl_normal(torch.zeros(2, 3), torch.zeros(2, 3))
        print("ok")
    """)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_release_library_has_no_debug_info():
    from fastgen import _C

    done = subprocess.run(["readelf", "-S", "--wide", _C.__file__], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("readelf (binutils) is not installed")
    assert ".debug_info" not in done.stdout, "the release build carries debug info (FASTGEN_BUILD=debug?)"
    assert os.path.getsize(_C.__file__) < 20 * 2**20


def test_every_kernel_is_compiled_per_capability_default_linked_first():
    """The ninja file (used by setup.py and the JIT fallback alike) compiles each kernel source
    once per capability with that capability's macro, and links the DEFAULT objects before the
    vector variants: shared inline code is then the copy every CPU can run."""
    from fastgen import _build

    ninja = _build._ninja_file("_C.so")
    link = next(line for line in ninja.splitlines() if line.startswith("build _C.so: link"))
    objects = link.split(": link ")[1].split()
    for source in _build.kernel_sources():
        name = os.path.basename(source)
        for capability in _build.capabilities():
            assert f"obj/{name}.{capability}.o" in objects
    ranks = [_build.capabilities().index(o.split(".")[-2]) for o in objects if not o.endswith(".ONCE.o")]
    assert ranks == sorted(ranks), "DEFAULT objects must come first in the link"
    assert all(o.endswith(".ONCE.o") for o in objects[: len(_build.dispatch_sources())])


@pytest.mark.slow
def test_jit_fallback_builds_and_loads(tmp_path):
    # A copy of the ahead-of-time build folder: ninja finds its objects current and relinks at
    # most, so this checks the JIT path (build_library into TORCH_EXTENSIONS_DIR, load_library,
    # capability selection) without compiling every variant a second time.
    from fastgen import _build

    shutil.copytree(_build.build_dir(), tmp_path / "fastgen", symlinks=True)
    done = _python(
        """
        import fastgen, torch
        from fastgen import _ext
        assert _ext.load() == "jit", _ext.load()
        info = fastgen.build_info()
        z, kl = fastgen.functional.reparameterize_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3))
        assert torch.equal(z, torch.ones(2, 3))
        print(info["cpu_capability"], info["float_vector_width"], info["openmp"])
    """,
        FASTGEN_FORCE_JIT="1",
        TORCH_EXTENSIONS_DIR=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = fastgen.build_info()
    assert done.stdout.split() == [info["cpu_capability"], str(info["float_vector_width"]), "True"]
