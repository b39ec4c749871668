"""`fastgen-bench --allocator system|tcmalloc|jemalloc`: the library search (PyTorch's launcher's,
then ldconfig), the re-execution with the library preloaded, the clear error for a missing
library, and the allocator recorded in the results."""

import json
import os
import subprocess
import sys

import pytest

from fastgen.bench import allocator


class Execve(Exception):
    pass


def _fake_execve(captured):
    def execve(exe, argv, env):
        captured.update(exe=exe, argv=argv, env=env)
        raise Execve()

    return execve


def test_reexecutes_itself_with_the_library_preloaded():
    captured = {}
    environ = {"LD_PRELOAD": "/opt/libjemalloc.so.2:/opt/libother.so", "PATH": "/bin"}
    with pytest.raises(Execve):
        allocator.ensure(
            "tcmalloc",
            ["--ops", "reparam_kl"],
            execve=_fake_execve(captured),
            find=lambda name: "/usr/lib/x/libtcmalloc_minimal.so.4",
            loaded=lambda: {"name": "system", "library": None},
            environ=environ,
        )
    assert captured["exe"] == sys.executable
    assert captured["argv"] == [sys.executable, "-m", "fastgen.bench", "--ops", "reparam_kl"]
    env = captured["env"]
    # This allocator first, any other malloc dropped, other preloads kept.
    assert env["LD_PRELOAD"] == "/usr/lib/x/libtcmalloc_minimal.so.4:/opt/libother.so"
    assert env["FASTGEN_BENCH_ALLOCATOR"] == "tcmalloc" and env["PATH"] == "/bin"
    assert environ["LD_PRELOAD"] == "/opt/libjemalloc.so.2:/opt/libother.so"  # the caller's environment is untouched


def test_jemalloc_gets_the_documented_settings_unless_the_user_set_their_own():
    env = allocator.child_environment("jemalloc", {}, "/l/libjemalloc.so.2")
    assert env["MALLOC_CONF"] == allocator.JEMALLOC_CONF and env["LD_PRELOAD"] == "/l/libjemalloc.so.2"
    env = allocator.child_environment("jemalloc", {"MALLOC_CONF": "narenas:1"}, "/l/libjemalloc.so.2")
    assert env["MALLOC_CONF"] == "narenas:1"


def test_system_drops_a_preloaded_malloc():
    env = allocator.child_environment("system", {"LD_PRELOAD": "/l/libtcmalloc.so"}, None)
    assert "LD_PRELOAD" not in env and env["FASTGEN_BENCH_ALLOCATOR"] == "system"


@pytest.mark.parametrize("name,package", [("tcmalloc", "libtcmalloc-minimal4"), ("jemalloc", "libjemalloc2")])
def test_a_missing_library_is_a_clear_error_naming_the_package(name, package):
    with pytest.raises(SystemExit) as info:
        allocator.ensure(
            name,
            [],
            execve=_fake_execve({}),
            find=lambda n: None,
            loaded=lambda: {"name": "system", "library": None},
            environ={},
        )
    message = str(info.value)
    assert f"--allocator {name}" in message and f"apt-get install {package}" in message


def test_a_preload_that_did_not_take_is_an_error_not_a_loop():
    with pytest.raises(SystemExit, match="re-executed with LD_PRELOAD"):
        allocator.ensure(
            "tcmalloc",
            [],
            execve=_fake_execve({}),
            find=lambda n: "/l/libtcmalloc.so",
            loaded=lambda: {"name": "system", "library": None},
            environ={"FASTGEN_BENCH_ALLOCATOR": "tcmalloc", "LD_PRELOAD": "/l/libtcmalloc.so"},
        )


def test_no_reexecution_when_already_on_the_allocator():
    for name, lib in (("system", None), ("tcmalloc", "/l/libtcmalloc.so")):
        info = allocator.ensure(
            name,
            [],
            execve=_fake_execve({}),
            find=lambda n: None,
            loaded=lambda name=name, lib=lib: {"name": name, "library": lib},
            environ={},
        )
        assert "name" in info
    assert allocator.ensure(None, [], execve=_fake_execve({}))["name"] == allocator.loaded_allocator()["name"]


def test_search_reuses_pytorchs_launcher(tmp_path, monkeypatch):
    # torch.backends.xeon.run_cpu looks in $VIRTUAL_ENV/lib (among others) for lib<name>.so.
    (tmp_path / "lib").mkdir()
    lib = tmp_path / "lib" / "libjemalloc.so"
    lib.write_bytes(b"")
    monkeypatch.setenv("VIRTUAL_ENV", str(tmp_path))
    monkeypatch.setenv("LD_PRELOAD", "/keep/me.so")
    assert allocator.find_library("jemalloc") == str(lib)
    assert os.environ["LD_PRELOAD"] == "/keep/me.so"  # run_cpu's edit of LD_PRELOAD is undone


def test_loaded_allocator_reads_the_process_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 00:00 1   /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.9\n"
        "7f02-7f03 r-xp 00000000 00:00 2   /usr/lib/x86_64-linux-gnu/libc.so.6\n"
    )
    assert allocator.loaded_allocator(str(maps)) == {
        "name": "tcmalloc",
        "library": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.9",
    }
    maps.write_text("7f02-7f03 r-xp 00000000 00:00 2   /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert allocator.loaded_allocator(str(maps))["name"] == "system"


@pytest.mark.skipif(allocator.find_library("tcmalloc") is None, reason="tcmalloc is not installed (make bench-deps)")
def test_fastgen_bench_runs_on_tcmalloc_and_records_it(tmp_path):
    # The real thing: the runner re-executes itself, the child runs on tcmalloc and says so.
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "FASTGEN_BENCH_ALLOCATOR")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastgen.bench",
            "--allocator",
            "tcmalloc",
            "--ops",
            "reparam_kl",
            "--shapes",
            "16x8",
            "--repeats",
            "2",
            "--no-compile",
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "bench.json").read_text())
    alloc = data["environment"]["allocator"]
    assert alloc["name"] == "tcmalloc" and "tcmalloc" in alloc["library"]
    assert {r["allocator"] for r in data["results"]} == {"tcmalloc"}
