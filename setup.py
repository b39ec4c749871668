"""Builds fastgen._C (the C++ CPU kernels, one variant per CPU capability) and installs fastgen
and fastgen.triton_kernels.

Install with torch already present and without build isolation:
    pip install --no-build-isolation -e .        (or `make install`)
    pip wheel --no-build-isolation --no-deps .   (or `make wheel`)
(with isolation pip would fetch a multi-GB CUDA torch to build against). The library is built
by fastgen/_build.py (ninja, incremental); setuptools only puts it in place.
"""

import importlib.util
import os
import re
import shutil

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("fastgen_build", os.path.join(_here, "fastgen", "_build.py"))
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)


def _version() -> str:
    """The one version string: fastgen/__init__.py's __version__."""
    with open(os.path.join(_here, "fastgen", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


class BuildWithNinja(build_ext):
    """Builds fastgen._C with fastgen/_build.py's ninja file and copies it where setuptools
    expects the extension (in place for `pip install -e`, into the wheel otherwise)."""

    def build_extension(self, ext):
        library = _build.build_library(verbose=bool(self.verbose > 1))
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(library, target)


class BuildPyFromScratch(build_py):
    """Copies the Python packages into an emptied build/lib: setuptools only ever adds files
    there, so a module deleted or renamed in the tree would otherwise still ship in the wheel."""

    def run(self):
        shutil.rmtree(os.path.join(self.build_lib, "fastgen"), ignore_errors=True)
        super().run()


setup(
    name="fastgen",
    version=_version(),
    description="Fused CPU (C++) and CUDA (Triton) kernels for generative models in PyTorch",
    python_requires=">=3.10",
    packages=find_packages(include=["fastgen", "fastgen.*"]) + ["fastgen.triton_kernels"],
    package_dir={"fastgen.triton_kernels": "triton_kernels"},
    ext_modules=[Extension(_build.EXTENSION_NAME, sources=[os.path.relpath(s, _here) for s in _build.sources()])],
    cmdclass={"build_py": BuildPyFromScratch, "build_ext": BuildWithNinja},
    # torch is pinned: fastgen._C is built against this torch's C++ ABI.
    install_requires=["torch==2.13.0"],
    extras_require={
        "cuda": ["triton==3.9.0"],  # the Triton kernels for CUDA tensors
        "bench": ["matplotlib", "tqdm"],  # fastgen-bench's chart and progress bar
        "examples": ["scikit-learn", "matplotlib"],
        "test": ["pytest", "pytest-benchmark", "hypothesis", "scipy", "scikit-learn", "triton==3.9.0", "ninja"],
    },
    entry_points={"console_scripts": ["fastgen-bench = fastgen.bench.__main__:main"]},
)
