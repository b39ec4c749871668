"""Build and import: what fastgen.build_info() reports, import without Triton or a GPU,
and the JIT fallback that compiles the same sources when fastgen._C is missing."""
import os
import subprocess
import sys
import textwrap

import torch

import fastgen


def _python(code: str, **env_overrides) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_overrides)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=900)


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


def test_build_targets_this_machines_capability():
    from fastgen import _build

    assert fastgen.build_info()["cpu_capability"] == _build.cpu_capability()


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


def test_jit_fallback_builds_the_same_sources(tmp_path):
    done = _python("""
        import fastgen, torch
        from fastgen import _ext
        assert _ext.load() == "jit", _ext.load()
        info = fastgen.build_info()
        z, kl = fastgen.functional.reparameterize_kl(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3))
        assert torch.equal(z, torch.ones(2, 3))
        print(info["cpu_capability"], info["float_vector_width"], info["openmp"])
    """, FASTGEN_FORCE_JIT="1", TORCH_EXTENSIONS_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    info = fastgen.build_info()
    assert done.stdout.split() == [info["cpu_capability"], str(info["float_vector_width"]), "True"]
