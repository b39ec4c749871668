# fastgen: `make bench` (the main job) and `make test` set everything up themselves.
# `make install` does only the set-up; it is idempotent and does nothing when nothing changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

# torch is pinned and installed first: an unpinned torch (or a build-isolated install of
# fastgen) would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
DEPS   := triton==3.9.0 numpy scipy scikit-learn pytest pytest-benchmark hypothesis ninja matplotlib tqdm setuptools wheel ruff clang-format==23.1.5

DEPS_STAMP  := $(VENV)/.deps-installed
BUILD_STAMP := $(VENV)/.fastgen-built
# Every C++ source and header (fastgen/_build.py globs csrc/**/*.h; add a level here if csrc grows one).
CXX_FILES := $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.h csrc/*/*/*.h)
BUILD_INPUTS := setup.py pyproject.toml fastgen/_build.py $(CXX_FILES)

.PHONY: install test test-fast lint format wheel system-deps bench bench-deps clean demo gpu-check

install: $(BUILD_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(DEPS_STAMP): $(PY) Makefile
	$(PIP) install -q $(TORCH)
	$(PIP) install -q $(DEPS)
	@touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(BUILD_INPUTS)
	$(PIP) install -q --no-build-isolation -e .
	@touch $@

# The emulated-CPU tests (tests/test_cpu_capabilities.py) run the kernels under qemu-user on CPUs
# without AVX-512 / AVX2; it comes from Debian (root, as on these machines).
system-deps:
	@command -v qemu-x86_64 >/dev/null 2>&1 || [ "$$(uname -m)" != x86_64 ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null; } || \
	  echo "make: could not install qemu-user (apt-get install qemu-user): the emulated-CPU tests will fail"

test: install system-deps
	$(PY) -m pytest tests bench --benchmark-disable -q

# ruff (pyproject.toml [tool.ruff]): pyflakes, pycodestyle and import order, and ruff's formatter,
# over the Python tree; clang-format (.clang-format; pinned in DEPS, as each version formats a
# little differently) over csrc/. `make format` applies both. CI runs `make lint`.
lint: $(DEPS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror $(CXX_FILES)

format: $(DEPS_STAMP)
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(CXX_FILES)

# The inner loop: everything but the JIT rebuild, emulated CPUs, the wheel, AOT compiles, examples.
test-fast: install
	$(PY) -m pytest tests bench --benchmark-disable -q -m "not slow"

# dist/fastgen-<version>-<python>-<platform>.whl: one stripped fastgen._C holding every CPU variant.
wheel: $(DEPS_STAMP)
	$(PIP) wheel -q --no-build-isolation --no-deps -w dist .

# `make bench` times on tcmalloc: under glibc malloc every tensor of 32 MiB or more is page-faulted
# afresh on each call, which hides the kernels (README, Benchmarks). BENCH_ALLOCATOR=system or
# jemalloc to change it. fastgen-bench preloads the library itself (--allocator); bench-deps
# installs the Debian/Ubuntu packages that provide them when the one asked for is missing.
BENCH_ALLOCATOR ?= tcmalloc
BENCH_ALLOCATOR_PACKAGES := libtcmalloc-minimal4 libjemalloc2

bench: bench-deps
	$(VENV)/bin/fastgen-bench --quick --allocator $(BENCH_ALLOCATOR)

bench-deps: install
	@if [ "$(BENCH_ALLOCATOR)" = system ] || $(PY) -c 'import sys; from fastgen.bench.allocator import find_library; sys.exit(find_library("$(BENCH_ALLOCATOR)") is None)'; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q $(BENCH_ALLOCATOR_PACKAGES) || { apt-get update -q && apt-get install -y -q $(BENCH_ALLOCATOR_PACKAGES); }; \
	else echo "make bench: no $(BENCH_ALLOCATOR); install $(BENCH_ALLOCATOR_PACKAGES) (apt-get, as root) or run with BENCH_ALLOCATOR=system" >&2; exit 1; fi

# Every example in its default setting (each under two minutes on 2 cores); PNGs in examples/out/.
EXAMPLES := autoencoder vae cvae dcgan wgan_gp realnvp cyclegan pix2pix srgan arcface
demo: install
	@set -e; for e in $(EXAMPLES); do echo "== examples.$$e"; $(PY) -m examples.$$e --quiet; done

# On a CUDA machine: every Triton kernel's parity cases on the GPU, the functional API against the
# eager references, fastgen-bench --device cuda; report in bench/results/gpu/ (README, "CUDA").
# Without CUDA it stops at once with the reason (exit 2).
gpu-check: install
	$(PY) -m fastgen.gpu_check

clean:
	rm -rf $(VENV) build *.egg-info fastgen/_C*.so
