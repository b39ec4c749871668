# fastgen: `make bench` (the main job) and `make test` set everything up themselves.
# `make install` does only the set-up; it is idempotent and does nothing when nothing changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check

# torch is pinned and installed first: an unpinned torch (or a build-isolated install of
# fastgen) would pull a multi-GB CUDA build.
TORCH  := torch==2.13.0
DEPS   := triton==3.9.0 numpy scipy scikit-learn pytest pytest-benchmark hypothesis ninja matplotlib tqdm setuptools wheel

DEPS_STAMP  := $(VENV)/.deps-installed
BUILD_STAMP := $(VENV)/.fastgen-built
BUILD_INPUTS := setup.py pyproject.toml fastgen/_build.py $(wildcard csrc/*.cpp csrc/*/*.h)

.PHONY: install test bench clean demo

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

test: install
	$(PY) -m pytest tests bench --benchmark-disable -q

bench: install
	$(VENV)/bin/fastgen-bench --quick

# Every example in its default setting (each under two minutes on 2 cores); PNGs in examples/out/.
EXAMPLES := autoencoder vae cvae dcgan wgan_gp realnvp cyclegan pix2pix srgan arcface
demo: install
	@set -e; for e in $(EXAMPLES); do echo "== examples.$$e"; $(PY) -m examples.$$e --quiet; done

clean:
	rm -rf $(VENV) build *.egg-info fastgen/_C*.so
